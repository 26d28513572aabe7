"""Metric totals per task name, folded in by the monitor from the task rows.

Prometheus counters must never go down and must agree between scrapes of different processes,
so they are not counted in memory: each monitor round reads the tasks created and finished since
its cursors (keyset pages on ``date_created`` and ``date_done``, at most FOLD_BATCH rows each)
and adds them to ``TaskTally`` rows and the cursors in one transaction. The cost of a round
follows the task rate, not the table's size; a scrape reads one row per task name. Deleting old
tasks (cleanup) does not lower the totals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskstore.models import TaskRecord
from taskstore.operations.models import TaskTally

# Seconds. The last bucket (+Inf) is implicit. Chosen to tell sub-second tasks apart and still
# place an hour-long one.
RUNTIME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
WAIT_BUCKETS = RUNTIME_BUCKETS
FOLD_BATCH = 5000
# See taskstore.operations.workers.COMMIT_LAG: rows commit a moment after their timestamps.
COMMIT_LAG = timedelta(seconds=1)
# The row that holds the cursors: a name no task can have (a control character), in the same
# table as the totals so a fold's transaction touches one table.
CURSOR_ROW = "\x1ftaskstore.cursor"


def empty_histogram(buckets: tuple[float, ...]) -> dict[str, Any]:
    """A histogram with nothing observed: one count per bucket and +Inf, sum, count."""
    return {"counts": [0] * (len(buckets) + 1), "sum": 0.0, "count": 0}


def observe(histogram: dict[str, Any], buckets: tuple[float, ...], value: float) -> None:
    """Add one observation (seconds)."""
    index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
    histogram["counts"][index] += 1
    histogram["sum"] += value
    histogram["count"] += 1


def _cursor(raw: Any) -> tuple[datetime, str] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    moment = parse_datetime(raw[0]) if isinstance(raw[0], str) else None
    return (moment, str(raw[1])) if moment else None


# What each page needs: a created task is counted as sent; a finished one gives its state,
# retries and times. (Every timestamp read costs a parse: the fold reads each task twice.)
_PAGE_FIELDS = {
    "date_created": ("task_id", "task_name", "date_created"),
    "date_done": ("task_id", "task_name", "state", "retries", "date_created", "date_started", "date_done"),
}


def _page(field: str, cursor: tuple[datetime, str] | None, until: datetime) -> list[Mapping[str, Any]]:
    rows = TaskRecord.objects.filter(**{f"{field}__lte": until})
    if cursor is None:
        rows = rows.filter(**{f"{field}__isnull": False})
    else:
        moment, task_id = cursor
        rows = rows.filter(Q(**{f"{field}__gt": moment}) | Q(**{field: moment, "task_id__gt": task_id}))
    return list(rows.order_by(field, "task_id").values(*_PAGE_FIELDS[field])[:FOLD_BATCH])


def fold() -> int:
    """Add the tasks created and finished since the cursors to the totals; return how many.

    The task rows are read before the transaction, which then locks rows of this one table
    only (the cursor row first): a transaction that held locks on two tables could deadlock
    with one that takes them in the other order (a TRUNCATE of every table, for one).
    """
    until = timezone.now() - COMMIT_LAG
    seen = TaskTally.objects.filter(task_name=CURSOR_ROW).values_list("cursor", flat=True).first() or {}
    created = _page("date_created", _cursor(seen.get("created")), until)
    done = _page("date_done", _cursor(seen.get("done")), until)
    if not created and not done:
        return 0
    changes: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in created:
        entry = changes[row["task_name"]]
        entry["sent"] = entry.get("sent", 0) + 1
    for row in done:
        entry = changes[row["task_name"]]
        entry.setdefault("finished", []).append(row)
    with transaction.atomic():
        TaskTally.objects.get_or_create(task_name=CURSOR_ROW, defaults={"cursor": {}})
        marker = TaskTally.objects.select_for_update().get(task_name=CURSOR_ROW)
        if (marker.cursor or {}) != seen:
            return 0  # another process folded these rows meanwhile: the next round goes on from there
        tallies = TaskTally.objects.select_for_update().in_bulk(list(changes))
        for name, change in changes.items():
            tally = tallies.get(name) or TaskTally(task_name=name)
            _apply(tally, change)
            tally.save()
        cursor = dict(seen)
        if created:
            last = created[-1]
            cursor["created"] = [last["date_created"].isoformat(), last["task_id"]]
        if done:
            last = done[-1]
            cursor["done"] = [last["date_done"].isoformat(), last["task_id"]]
        marker.cursor = cursor
        marker.save(update_fields=["cursor"])
    return len(created) + len(done)


def _apply(tally: TaskTally, change: dict[str, Any]) -> None:
    tally.sent += change.get("sent", 0)
    runtime = tally.runtime or empty_histogram(RUNTIME_BUCKETS)
    wait = tally.wait or empty_histogram(WAIT_BUCKETS)
    states = dict(tally.states or {})
    for row in change.get("finished", []):
        states[row["state"]] = states.get(row["state"], 0) + 1
        tally.retries += row["retries"] or 0
        if row["date_started"] is not None:
            observe(
                runtime, RUNTIME_BUCKETS, max((row["date_done"] - row["date_started"]).total_seconds(), 0)
            )
            observe(wait, WAIT_BUCKETS, max((row["date_started"] - row["date_created"]).total_seconds(), 0))
    tally.states, tally.runtime, tally.wait = states, runtime, wait
