"""The documents of the operations console: workers, queues and control actions as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskstore.documents import iso
from taskstore.operations.models import ControlAction, QueueRecord, WorkerRecord


def worker_status(worker: WorkerRecord, now: datetime) -> str:
    """The status to show: an online worker whose heartbeat is late is lost, even before the
    monitor has recorded it so."""
    if worker.status == WorkerRecord.ONLINE and worker.expires < now:
        return WorkerRecord.LOST
    return worker.status


def worker_document(worker: WorkerRecord, now: datetime | None = None) -> dict[str, Any]:
    """The worker document (the ``worker.update`` frame's body and REST's)."""
    return {
        "hostname": worker.hostname,
        "status": worker_status(worker, now) if now is not None else worker.status,
        "version": worker.version,
        "pid": worker.pid,
        "pool": worker.pool,
        "concurrency": worker.concurrency,
        "queues": worker.queues,
        "software": worker.software,
        "running": worker.running,
        "processed": worker.processed,
        "succeeded": worker.succeeded,
        "failed": worker.failed,
        "started": iso(worker.started),
        "last_heartbeat": iso(worker.last_heartbeat),
        "stopped": iso(worker.stopped),
    }


def queue_document(queue: QueueRecord) -> dict[str, Any]:
    """The queue document (the ``queue.update`` frame's body and REST's)."""
    return {
        "queue": queue.name,
        "depth": queue.depth,
        "broker": queue.broker,
        "version": queue.version,
        "date_updated": iso(queue.date_updated),
    }


def action_document(action: ControlAction) -> dict[str, Any]:
    """The control action document (the ``action.recorded`` frame's body and REST's)."""
    return {
        "id": action.pk,
        "action": action.action,
        "target": action.target,
        "user": action.username,
        "ok": action.ok,
        "detail": action.detail,
        "created": iso(action.created),
    }
