"""Queue depths read from the broker, and purging a queue.

Depths are read with a passive ``queue_declare`` (its ``message_count``): on RabbitMQ that is
the server's count of ready messages; on Redis kombu sums the list lengths of the queue's
priority levels. A queue the broker does not know has no messages waiting (Redis removes an
empty list). Other transports answer "unknown" (``depth`` null) rather than a guess.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import ChannelError, OperationalError

from taskstore import conf
from taskstore.operations import push
from taskstore.operations.documents import queue_document
from taskstore.operations.exceptions import UnknownQueue
from taskstore.operations.models import QueueRecord, WorkerRecord

logger = logging.getLogger(__name__)

# kombu transports whose passive declare counts the messages waiting. "memory" only sees
# its own process's queues: right for the embedded default, where everything is one process.
COUNTABLE = frozenset({"redis", "amqp", "memory"})


def register_watched() -> None:
    """Put this process's TASKSTORE_WATCH_QUEUES on the deployment's list (a queue row each,
    depth unknown until read), so whichever process reads the depths reads them too.

    Run every round, not once: a row deleted since (in the admin, or by a database reset) would
    otherwise drop the queue from the reader's list while this process still watches it. One
    query when every row is there."""
    watched = conf.watch_queues()
    if not watched:
        return
    present = set(QueueRecord.objects.filter(name__in=watched).values_list("name", flat=True))
    missing = [name for name in watched if name not in present]
    if missing:
        now = timezone.now()
        QueueRecord.objects.bulk_create(
            [QueueRecord(name=name, date_updated=now) for name in missing], ignore_conflicts=True
        )


def queue_names() -> list[str]:
    """The queues to watch: the default queue, the configured ones, TASKSTORE_WATCH_QUEUES, every
    queue a known worker consumes, and every queue already on the list."""
    app = current_app
    names = {app.conf.task_default_queue, *conf.watch_queues()}
    names.update(QueueRecord.objects.values_list("name", flat=True))
    names.update(q.name for q in app.conf.task_queues or [])
    for queues in WorkerRecord.objects.values_list("queues", flat=True):
        names.update(q for q in queues or [] if isinstance(q, str))
    return sorted(n for n in names if n)


def read_depths(names: list[str]) -> tuple[str, dict[str, int | None]]:
    """The broker's transport name and each queue's depth (None when it cannot tell)."""
    with current_app.connection_for_read() as conn:
        transport = conn.transport.driver_type
        if transport not in COUNTABLE:
            return transport, dict.fromkeys(names)
        conn.ensure_connection(max_retries=1)
        depths: dict[str, int | None] = {}
        for name in names:
            # A channel of its own: on RabbitMQ a missing queue closes the channel it was asked on.
            # (The transport's own channel class; kombu's type names only their common base.)
            channel: Any = conn.channel()
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except ChannelError:
                depths[name] = 0
            finally:
                _close(channel)
    return transport, depths


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # a channel the broker already closed
        logger.debug("closing a channel failed", exc_info=True)


def refresh() -> list[dict[str, Any]]:
    """Read every watched queue's depth; record and push the ones that changed."""
    names = queue_names()
    try:
        transport, depths = read_depths(names)
    except (OperationalError, OSError) as exc:
        logger.warning("Could not read queue depths from the broker: %s", exc)
        transport, depths = "", dict.fromkeys(names)
    return [d for d in (save(name, transport, depth) for name, depth in depths.items()) if d]


def save(name: str, transport: str, depth: int | None) -> dict[str, Any] | None:
    """Record one queue's depth; a new version (pushed) only when it changed."""
    now = timezone.now()
    with transaction.atomic():
        row = QueueRecord.objects.select_for_update().filter(name=name).first()
        if row is not None and row.depth == depth and row.broker == transport:
            return None
        row = row or QueueRecord(name=name)
        row.depth, row.broker, row.date_updated = depth, transport, now
        row.version += 1
        row.save()
        document = queue_document(row)
        push.on_commit(push.MESSAGE_QUEUE, document)
    return document


def purge(name: str) -> int:
    """Delete every message waiting in queue ``name``; return how many there were."""
    if name not in queue_names():
        raise UnknownQueue(f"No queue named {name!r} is configured or consumed by a known worker.")
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        channel: Any = conn.channel()
        try:
            return int(channel.queue_purge(name) or 0)
        except ChannelError:
            return 0  # the broker has no such queue: nothing was waiting
        finally:
            _close(channel)
