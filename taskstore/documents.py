"""The task and group documents of the contract (REST bodies and WebSocket payloads)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from taskstore import conf

if TYPE_CHECKING:
    from taskstore.models import TaskRecord

# Fields only staff may see; everything else in a document is visible to whoever may see it.
STAFF_FIELDS = ("traceback", "args", "kwargs")

# How documents show a timestamp: ISO 8601 in UTC, with microseconds and "Z". The database
# renders the same format from this one (taskstore.sql).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Kind(Enum):
    """How a field's value is read from its column (of the same name) in a task row."""

    COLUMN = "column"  # as it is
    TIMESTAMP = "timestamp"  # in TIMESTAMP_FORMAT, or None
    BLANK_IS_NULL = "blank_is_null"  # an empty string shows as None
    CONSTANT = "constant"  # no column: always ``Field.value``


@dataclass(frozen=True)
class Field:
    """One key of the task document: how a recorded task shows it, and an unrecorded one."""

    name: str
    kind: Kind = Kind.COLUMN
    value: Any = None  # CONSTANT's value
    unrecorded: Any = None  # the value in the document of a task nothing has recorded yet
    recorded_only: bool = False  # left out of that document


# The task document, key by key and in order: the one definition that both the Python builder
# (task_document) and the database's (taskstore.sql, PostgreSQL's one-statement write) follow.
TASK_FIELDS = (
    Field("task_id"),
    Field("task_name", unrecorded=""),
    Field("state", unrecorded="PENDING"),
    Field("version", unrecorded=0),
    Field("retries", unrecorded=0),
    Field("result"),
    Field("result_truncated", Kind.CONSTANT, value=False, unrecorded=False),
    Field("progress"),
    Field("error"),
    Field("group_id"),
    Field("parent_id"),
    Field("worker"),
    Field("date_created", Kind.TIMESTAMP),
    Field("date_started", Kind.TIMESTAMP),
    Field("date_done", Kind.TIMESTAMP),
    Field("owner_id", recorded_only=True),
    Field("traceback", Kind.BLANK_IS_NULL, recorded_only=True),
    Field("args", recorded_only=True),
    Field("kwargs", recorded_only=True),
)


def iso(value: datetime | None) -> str | None:
    """A timestamp as the documents show it (TIMESTAMP_FORMAT), None for none."""
    return value.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT) if value else None


def _reader(field: Field) -> Callable[[TaskRecord], Any]:
    """How ``field`` is read from a task row."""
    if field.kind is Kind.CONSTANT:
        return lambda record: field.value
    column = attrgetter(field.name)
    if field.kind is Kind.TIMESTAMP:
        return lambda record: iso(column(record))
    if field.kind is Kind.BLANK_IS_NULL:
        return lambda record: column(record) or None
    return column


# Each field's reader, made once (documents are built for every REST row and, on SQLite, for
# every transition).
_READERS = tuple((field.name, _reader(field)) for field in TASK_FIELDS)


def task_document(record: TaskRecord) -> dict[str, Any]:
    """Return the full task document of ``record``, staff fields included."""
    return {name: read(record) for name, read in _READERS}


def unrecorded_document(task_id: str) -> dict[str, Any]:
    """The document of a task nothing has recorded yet: ``PENDING``, version 0."""
    document = {field.name: field.unrecorded for field in TASK_FIELDS if not field.recorded_only}
    document["task_id"] = task_id
    return document


def for_viewer(document: dict[str, Any], staff: bool) -> dict[str, Any]:
    """Return ``document`` as a viewer may see it: staff fields for staff only, no owner id."""
    shown = {k: v for k, v in document.items() if k != "owner_id"}
    if not staff:
        for name in STAFF_FIELDS:
            shown.pop(name, None)
    else:
        for name in STAFF_FIELDS:
            shown.setdefault(name, None)
    return shown


def for_push(document: dict[str, Any]) -> dict[str, Any]:
    """Return ``document`` fit for the channel layer: a result over the push limit is dropped."""
    result = document.get("result")
    if result is None:
        return document
    limit = conf.push_result_limit()
    if len(json.dumps(result, separators=(",", ":"))) <= limit:
        return document
    return {**document, "result": None, "result_truncated": True}
