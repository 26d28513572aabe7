"""The write path of worker rows: online, heartbeat, offline, lost.

Each write locks the worker's row, works out its new values and bumps its version only when
something a reader sees changed (status, details, counts): a heartbeat that changes nothing
and whose lease is still fresh writes nothing at all, and one that only renews the lease writes
without a new version and pushes nothing. Each new version is pushed on the staff feed after
the commit (``worker.update``), so a feed sends each version once, in order.

A worker's counts come from the task rows (the database is the source of truth), read
incrementally: each heartbeat adds the tasks the worker finished since the previous one
(``counted_until``), a bounded read on ``taskstore_task_worker_idx``, and counts its running
tasks on the partial index ``taskstore_task_running_idx``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from taskstore import conf, states
from taskstore.models import TaskRecord
from taskstore.operations import push
from taskstore.operations.documents import worker_document
from taskstore.operations.models import WorkerRecord

logger = logging.getLogger(__name__)

# Fields whose change makes a new version; the rest (lease, cursor) are bookkeeping.
VISIBLE = (
    "status", "pid", "pool", "concurrency", "queues", "software", "running", "processed",
    "succeeded", "failed", "started", "stopped",
)  # fmt: skip

# A task's row commits a moment after its date_done was taken: a heartbeat counts tasks
# finished up to this long ago, so a slow commit is counted by the next one, not missed.
COMMIT_LAG = timedelta(seconds=1)

# States a task is in before it runs or between attempts: not running.
NOT_RUNNING = (states.PENDING, states.RECEIVED, states.RETRY)

Build = Callable[[WorkerRecord | None, datetime], dict[str, Any] | None]


def write(hostname: str, build: Build) -> dict[str, Any] | None:
    """Apply ``build(row, now)``'s values to the worker's row; return the new document when the
    version moved (it is pushed after the commit), else None. ``build`` returns None to write
    nothing."""
    now = timezone.now()
    with transaction.atomic():
        row = WorkerRecord.objects.select_for_update().filter(hostname=hostname).first()
        values = build(row, now)
        if values is None:
            return None
        if row is None:
            row = WorkerRecord(hostname=hostname, counted_until=now, started=now)
        changed = row.version == 0 or any(
            getattr(row, field) != values[field] for field in VISIBLE if field in values
        )
        for field, value in values.items():
            setattr(row, field, value)
        row.date_updated = now
        if changed:
            row.version += 1
        row.save()
        if not changed:
            return None
        document = worker_document(row)
        push.on_commit(push.MESSAGE_WORKER, document)
    return document


def lease(now: datetime) -> datetime:
    """When a worker renewed at ``now`` counts as lost."""
    return now + timedelta(seconds=conf.worker_lost_after())


def online(hostname: str, details: dict[str, Any]) -> dict[str, Any] | None:
    """A worker came up: its details, counts from zero."""

    def build(row: WorkerRecord | None, now: datetime) -> dict[str, Any]:
        return {
            **details,
            "status": WorkerRecord.ONLINE,
            "running": 0,
            "processed": 0,
            "succeeded": 0,
            "failed": 0,
            "started": now,
            "stopped": None,
            "counted_until": now,
            "last_heartbeat": now,
            "expires": lease(now),
        }

    return write(hostname, build)


def heartbeat(hostname: str, started: datetime, details: dict[str, Any]) -> dict[str, Any] | None:
    """A heartbeat of the worker that came online at ``started``: counts, lease, status.

    A row that went away (deleted by hand, a restored database) is written again from
    ``details``, its counts taken afresh from the task rows since ``started``.
    """
    seen = WorkerRecord.objects.filter(hostname=hostname).first()
    existed = seen is not None
    if seen is not None and seen.started != started:
        return None  # another run of this host name owns the row now
    if seen is None:
        seen = WorkerRecord(hostname=hostname, started=started, counted_until=started, **details)
    fresh = counts(seen, timezone.now() - COMMIT_LAG)
    half_lease = timedelta(seconds=conf.worker_lost_after() / 2)

    def build(row: WorkerRecord | None, now: datetime) -> dict[str, Any] | None:
        if row is None:
            if existed:
                return None  # deleted since it was read: the next beat writes it again
            return {
                **details,
                **fresh,
                "status": WorkerRecord.ONLINE,
                "started": started,
                "stopped": None,
                "last_heartbeat": now,
                "expires": lease(now),
            }
        if not _unchanged_since(row, seen):
            return None  # written meanwhile (a clean shutdown): the counts were read too early
        values = {**fresh, "status": WorkerRecord.ONLINE}
        changed = any(getattr(row, field) != values[field] for field in VISIBLE if field in values)
        if not changed and row.expires - now > half_lease and row.counted_until == values["counted_until"]:
            return None
        values.update(last_heartbeat=now, expires=lease(now))
        return values

    return write(hostname, build)


def offline(hostname: str, started: datetime) -> dict[str, Any] | None:
    """A clean shutdown: the final counts, nothing running."""
    seen = WorkerRecord.objects.filter(hostname=hostname, started=started).first()
    if seen is None:
        return None
    fresh = counts(seen, timezone.now())

    def build(row: WorkerRecord | None, now: datetime) -> dict[str, Any] | None:
        if row is None or not _unchanged_since(row, seen):
            return None
        return {**fresh, "status": WorkerRecord.OFFLINE, "running": 0, "stopped": now,
                "last_heartbeat": now, "expires": now}  # fmt: skip

    return write(hostname, build)


def _unchanged_since(row: WorkerRecord, seen: WorkerRecord) -> bool:
    """Whether the locked ``row`` still has the run and the counts read as ``seen``.

    Counts are read from the task table before the row is locked, so that a write holds locks
    on one table only (a transaction locking two in one order can deadlock with one taking them
    in the other).
    """
    return (row.started, row.counted_until, row.processed) == (
        seen.started,
        seen.counted_until,
        seen.processed,
    )


def mark_lost(now: datetime | None = None) -> list[dict[str, Any]]:
    """Record every online worker whose lease ran out as lost; return their documents."""
    now = now or timezone.now()
    late = WorkerRecord.objects.filter(status=WorkerRecord.ONLINE, expires__lt=now)
    documents = []
    for hostname in late.values_list("hostname", flat=True):

        def build(row: WorkerRecord | None, when: datetime) -> dict[str, Any] | None:
            # Checked again under the row lock: a heartbeat may have come in between.
            if row is None or row.status != WorkerRecord.ONLINE or row.expires >= when:
                return None
            return {"status": WorkerRecord.LOST}

        document = write(hostname, build)
        if document is not None:
            logger.warning("Worker %s is lost: no heartbeat since %s", hostname, document["last_heartbeat"])
            documents.append(document)
    return documents


def counts(row: WorkerRecord, until: datetime) -> dict[str, Any]:
    """The worker's counts with the tasks it finished in (counted_until, until] added, and its
    running tasks counted afresh."""
    values: dict[str, Any] = {
        "processed": row.processed,
        "succeeded": row.succeeded,
        "failed": row.failed,
        "counted_until": row.counted_until,
    }
    if until > row.counted_until:
        finished = dict(
            TaskRecord.objects.filter(
                worker=row.hostname, date_done__gt=row.counted_until, date_done__lte=until
            )
            .order_by()
            .values_list("state")
            .annotate(n=Count("pk"))
        )
        total = sum(finished.values())
        succeeded = finished.get(states.SUCCESS, 0)
        if total:  # else the cursor stays: an idle heartbeat has nothing to write
            values.update(
                processed=row.processed + total,
                succeeded=row.succeeded + succeeded,
                failed=row.failed + total - succeeded,
                counted_until=until,
            )
    values["running"] = (
        TaskRecord.objects.filter(
            worker=row.hostname,
            date_done__isnull=True,
            date_started__isnull=False,
            date_started__gte=row.started,
        )
        .exclude(state__in=NOT_RUNNING)
        .count()
    )
    return values
