"""Task statistics per task name over a window, computed by the database.

The window is the tasks that *finished* in it (``date_done`` at or after its start): count,
failure rate (FAILURE / finished), retries (the sum of the finished tasks' attempt numbers),
runtime (STARTED → done) and queue wait (PENDING → STARTED) p50 and p95. A retried task's runtime
is its last attempt's, and its wait runs from its first PENDING to its last STARTED.

On PostgreSQL one ``GROUP BY`` with ``percentile_cont`` (linear interpolation between the two
nearest values, timestamps to the microsecond), reading a range of ``taskstore_task_done_idx``:
its cost follows the rows finished in the window, not the table's size (docs/benchmarks.md has
the figures at 1 million rows), which is why the widest window is a day. Elsewhere (SQLite)
the window's rows are read and the same interpolation is done in Python.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from taskstore import states
from taskstore.models import TaskRecord
from taskstore.operations.exceptions import UnknownWindow

# The windows a caller may ask for, by name.
WINDOWS = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
}
DEFAULT_WINDOW = "1h"

_SQL = """
SELECT task_name,
       count(*),
       count(*) FILTER (WHERE state = %s),
       coalesce(sum(retries), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM date_done - date_started)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM date_done - date_started)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM date_started - date_created)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM date_started - date_created))
FROM {table}
WHERE date_done >= %s
GROUP BY task_name
ORDER BY task_name
"""

COLUMNS = ("task_name", "count", "failed", "retries", "runtime_p50", "runtime_p95", "wait_p50", "wait_p95")


def window_of(name: str | None) -> tuple[str, timedelta]:
    """The window named ``name`` (default: the last hour), or UnknownWindow."""
    name = name or DEFAULT_WINDOW
    if name not in WINDOWS:
        raise UnknownWindow(f"Unknown window {name!r}: use one of {', '.join(WINDOWS)}.")
    return name, WINDOWS[name]


def task_statistics(window: timedelta) -> list[dict[str, Any]]:
    """One entry per task name that finished tasks in the last ``window``."""
    since = timezone.now() - window
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(TaskRecord._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(_SQL.format(table=table), [states.FAILURE, since])
            rows = [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    else:
        rows = _in_python(since)
    return [_shaped(row) for row in rows]


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    count = int(row["count"])
    failed = int(row["failed"])
    shaped = {
        "task_name": row["task_name"],
        "count": count,
        "failed": failed,
        "failure_rate": failed / count if count else 0.0,
        "retries": int(row["retries"]),
    }
    for key in ("runtime_p50", "runtime_p95", "wait_p50", "wait_p95"):
        shaped[key] = None if row[key] is None else round(float(row[key]), 6)
    return shaped


def percentile(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation over the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _in_python(since: Any) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "failed": 0, "retries": 0, "runtime": [], "wait": []}
    )
    rows = TaskRecord.objects.filter(date_done__gte=since).values_list(
        "task_name", "state", "retries", "date_created", "date_started", "date_done"
    )
    for name, state, retries, created, started, done in rows.iterator(chunk_size=2000):
        group = groups[name]
        group["count"] += 1
        group["failed"] += state == states.FAILURE
        group["retries"] += retries or 0
        if started is not None and done is not None:  # rows since `since` have a date_done
            group["runtime"].append((done - started).total_seconds())
            group["wait"].append((started - created).total_seconds())
    return [
        {
            "task_name": name,
            "count": g["count"],
            "failed": g["failed"],
            "retries": g["retries"],
            "runtime_p50": percentile(g["runtime"], 0.5),
            "runtime_p95": percentile(g["runtime"], 0.95),
            "wait_p50": percentile(g["wait"], 0.5),
            "wait_p95": percentile(g["wait"], 0.95),
        }
        for name, g in sorted(groups.items())
    ]
