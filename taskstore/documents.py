"""The task and group documents of the contract (REST bodies and WebSocket payloads)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from taskstore import conf
from taskstore.models import TaskRecord

# Fields only staff may see; everything else in a document is visible to whoever may see it.
STAFF_FIELDS = ("traceback", "args", "kwargs")


def iso(value: datetime | None) -> str | None:
    """A timestamp as the documents show it: ISO 8601 in UTC, with microseconds and "Z".

    The database renders event documents the same way (taskstore.sql).
    """
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def task_document(record: TaskRecord) -> dict[str, Any]:
    """Return the full task document of ``record``, staff fields included."""
    return {
        "task_id": record.task_id,
        "task_name": record.task_name,
        "state": record.state,
        "version": record.version,
        "retries": record.retries,
        "result": record.result,
        "result_truncated": False,
        "progress": record.progress,
        "error": record.error,
        "group_id": record.group_id,
        "parent_id": record.parent_id,
        "worker": record.worker,
        "date_created": iso(record.date_created),
        "date_started": iso(record.date_started),
        "date_done": iso(record.date_done),
        "owner_id": record.owner_id,
        "traceback": record.traceback or None,
        "args": record.args,
        "kwargs": record.kwargs,
    }


def unrecorded_document(task_id: str) -> dict[str, Any]:
    """The document of a task nothing has recorded yet: ``PENDING``, version 0."""
    return {
        "task_id": task_id,
        "task_name": "",
        "state": "PENDING",
        "version": 0,
        "retries": 0,
        "result": None,
        "result_truncated": False,
        "progress": None,
        "error": None,
        "group_id": None,
        "parent_id": None,
        "worker": None,
        "date_created": None,
        "date_started": None,
        "date_done": None,
    }


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
