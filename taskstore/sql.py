"""The recorder's SQL: one conditional upsert per transition (PostgreSQL and SQLite alike), and on
PostgreSQL the event row in the same statement.

The ``WHERE`` of the upsert is the lifecycle rule (taskstore.states): a transition is written only
when its position is past the stored one, or when it is a new value of the same custom state, and
the stored position is at least the statement's floor (its last parameter; 0 for most
transitions, RECEIVED's position for a STARTED that must not skip RECEIVED).

On PostgreSQL the statement also builds the task document (the event row's, and what the
recorder publishes) from the same field list as taskstore.documents.task_document. SQLite cannot
insert in a ``WITH`` clause, so there the recorder writes the event in a second statement of the
same transaction, with the document built in Python.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from taskstore.documents import TASK_FIELDS, TIMESTAMP_FORMAT, Kind

COLUMNS = (
    "task_id", "task_name", "state", "version", "position", "transition_key", "retries",
    "result", "progress", "error", "traceback", "args", "kwargs", "owner_id", "group_id",
    "parent_id", "worker", "date_created", "date_started", "date_done", "date_updated",
    "celery_meta",
)  # fmt: skip

# date_updated never goes back: the write's time is taken before the row lock, so a write that
# waited for another may carry the earlier time (feeds read "changed since" by this column).
_UPSERT = """
INSERT INTO {table} AS t ({columns}) VALUES {rows}
ON CONFLICT (task_id) DO UPDATE SET
    task_name = CASE WHEN excluded.task_name <> '' THEN excluded.task_name ELSE t.task_name END,
    state = excluded.state,
    version = t.version + {step},
    position = excluded.position,
    transition_key = excluded.transition_key,
    retries = CASE WHEN excluded.retries > t.retries THEN excluded.retries ELSE t.retries END,
    result = excluded.result,
    progress = COALESCE(excluded.progress, t.progress),
    error = excluded.error,
    traceback = excluded.traceback,
    args = COALESCE(t.args, excluded.args),
    kwargs = COALESCE(t.kwargs, excluded.kwargs),
    owner_id = COALESCE(t.owner_id, excluded.owner_id),
    group_id = COALESCE(t.group_id, excluded.group_id),
    parent_id = COALESCE(t.parent_id, excluded.parent_id),
    worker = COALESCE(excluded.worker, t.worker),
    date_started = COALESCE(excluded.date_started, t.date_started),
    date_done = excluded.date_done,
    date_updated = CASE WHEN excluded.date_updated > t.date_updated
                        THEN excluded.date_updated ELSE t.date_updated END,
    celery_meta = COALESCE(excluded.celery_meta, t.celery_meta)
WHERE (t.position < {before}
       OR (t.position = excluded.position AND excluded.transition_key <> ''
           AND t.transition_key <> excluded.transition_key))
  AND t.position >= %s
RETURNING {columns}
"""

# strftime's directives in TIMESTAMP_FORMAT as PostgreSQL's to_char writes them.
_TO_CHAR = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%H": "HH24", "%M": "MI", "%S": "SS", "%f": "US"}


def to_char_pattern(strftime_format: str) -> str:
    """``strftime_format`` as a PostgreSQL ``to_char`` pattern (the text between directives
    quoted, so none of it is read as a pattern)."""
    pattern = []
    for piece in re.split(r"(%.)", strftime_format):
        if piece.startswith("%"):
            if piece not in _TO_CHAR:
                raise ValueError(f"No to_char pattern for {piece!r} (taskstore.sql._TO_CHAR)")
            pattern.append(_TO_CHAR[piece])
        elif piece:
            pattern.append('"' + piece.replace('"', '\\"') + '"')
    return "".join(pattern)


def document_expression(row: str) -> str:
    """PostgreSQL: the task document of the task row aliased ``row``, built by the database as
    taskstore.documents.task_document builds it in Python (both follow TASK_FIELDS)."""
    stamp = to_char_pattern(TIMESTAMP_FORMAT).replace("'", "''")
    values = {
        Kind.COLUMN: "{row}.{name}",
        Kind.TIMESTAMP: f"to_char({{row}}.{{name}} AT TIME ZONE 'UTC', '{stamp}')",
        Kind.BLANK_IS_NULL: "NULLIF({row}.{name}, '')",
    }
    pairs = []
    for field in TASK_FIELDS:
        if field.kind is Kind.CONSTANT:
            value = "'" + json.dumps(field.value).replace("'", "''") + "'::jsonb"
        else:
            value = values[field.kind].format(row=row, name=field.name)
        pairs.append(f"'{field.name}', {value}")
    return "jsonb_build_object(" + ", ".join(pairs) + ")"


# The written row's document (built once: it is part of every statement's text).
_DOCUMENT = document_expression("w")

_UPSERT_WITH_EVENT = """
WITH w AS ({upsert}),
e AS (
    INSERT INTO {events} (task_id, version, state, document, created)
    SELECT w.task_id, w.version, w.state, {document}, w.date_updated FROM w
    RETURNING document
)
SELECT document FROM e
"""


# A pool child's STARTED and the final state that followed it within the linger
# (taskstore.linger), and RECEIVED before them when the worker's main process has not recorded it
# yet (taskstore.received holds it for a moment): the row is written once, as of the final state,
# as many versions on as there are states, and each transition gets its event. The documents of
# the states before the end are the final one as it was before the end (and, for RECEIVED, before
# the start).
_BEFORE_END = "'result', NULL, 'error', NULL, 'traceback', NULL, 'date_done', NULL"
_LEADING_OVERRIDES = {
    "STARTED": f"'state', 'STARTED', 'version', d.version - __BACK__, {_BEFORE_END}",
    "RECEIVED": f"'state', 'RECEIVED', 'version', d.version - __BACK__, {_BEFORE_END}, 'date_started', NULL",
}

# The final document is built once (d) and each earlier one from it: the statement's text stays
# under psycopg's 4 KiB limit for caching its conversion, which it does at every execution.
_UPSERT_LEADING_AND_FINAL = """
WITH w AS ({upsert}),
d AS (SELECT w.task_id, w.version, w.state, w.date_started, w.date_updated, {document} AS document FROM w),
e AS (
    INSERT INTO {events} (task_id, version, state, document, created)
    {leading}
    SELECT d.task_id, d.version, d.state, d.document, d.date_updated FROM d
    RETURNING version, document
)
SELECT document FROM e ORDER BY version
"""


# Built once per shape (and kept for the most recent few): this runs for every transition.
@lru_cache(maxsize=64)
def upsert(table: str, rows: int = 1) -> str:
    """The conditional upsert of ``rows`` task rows (distinct tasks), returning the rows written.

    Parameters: each row's values in :data:`COLUMNS` order, then the floor.
    """
    return _upsert(table, rows, step=1, before="excluded.position")


@lru_cache(maxsize=64)
def _upsert(table: str, rows: int, step: int, before: str) -> str:
    row = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    return _UPSERT.format(
        table=table, columns=", ".join(COLUMNS), rows=", ".join([row] * rows), step=step, before=before
    )


@lru_cache(maxsize=64)
def upsert_with_event(table: str, events: str, rows: int = 1) -> str:
    """PostgreSQL: the upsert and each written row's event in one statement, returning the
    documents."""
    return _UPSERT_WITH_EVENT.format(upsert=upsert(table, rows).strip(), events=events, document=_DOCUMENT)


@lru_cache(maxsize=64)
def upsert_leading_and_final(table: str, events: str, leading: tuple[str, ...]) -> str:
    """PostgreSQL: the states ``leading`` (``("STARTED",)`` or ``("RECEIVED", "STARTED")``) and
    the final state of one task in one statement, returning every document in order.

    Parameters: the final state's row (``version`` one more than ``leading`` has states,
    ``date_started`` STARTED's time) in :data:`COLUMNS` order, then the first leading state's
    position (the lifecycle rule is that state's: the row is written where it would be), then the
    floor.
    """
    upsert_final = _upsert(table, 1, step=len(leading) + 1, before="%s").strip()
    parts = [
        f"SELECT d.task_id, d.version - {back}, '{state}', d.document || "
        f"jsonb_build_object({_LEADING_OVERRIDES[state].replace('__BACK__', str(back))}), d.date_started FROM d UNION ALL"
        for back, state in zip(range(len(leading), 0, -1), leading, strict=True)
    ]
    return _UPSERT_LEADING_AND_FINAL.format(
        upsert=upsert_final, events=events, leading="\n    ".join(parts), document=_DOCUMENT
    )
