"""Queue depths read from the broker, and purging a queue.

Depths are read with a passive ``queue_declare`` (its ``message_count``): on RabbitMQ that is
the server's count of ready messages; on Redis kombu sums the list lengths of the queue's
priority levels. A queue the broker does not know has no messages waiting (Redis removes an
empty list). Other transports answer "unknown" (``depth`` null) rather than a guess.

Processes that share a database may talk to different brokers. Each queue row and each worker
row records its broker (``broker_key``, a digest of the address), and each broker's monitor
reads only its own queues: a queue row another broker's live monitor reads is left to it, so
two monitors never write one row in turn (one reading the backlog, the other an empty queue of
the same name). A queue name is one row: when two brokers both have a queue of that name, the
first monitor to read it keeps it while its lease lives.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone
from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError

from taskstore import conf
from taskstore.operations import push
from taskstore.operations.documents import queue_document
from taskstore.operations.exceptions import UnknownQueue
from taskstore.operations.models import Lease, QueueRecord, WorkerRecord

logger = logging.getLogger(__name__)

# kombu transports whose passive declare counts the messages waiting. "memory" only sees
# its own process's queues: right for the embedded default, where everything is one process.
COUNTABLE = frozenset({"redis", "amqp", "memory"})

# The monitor's lease of a broker is the Lease row named this prefix and the broker's key.
LEASE_PREFIX = "monitor:"


def key_of(connection: Connection) -> str:
    """A broker's name in the database: a digest of its address (the password left out)."""
    return hashlib.sha256(connection.as_uri().encode()).hexdigest()[:16]


def broker_key(app: Any = None) -> str:
    """This process's broker's key (:func:`key_of`)."""
    with (app or current_app).connection_for_read() as conn:
        return key_of(conn)


def read_elsewhere(key: str) -> set[str]:
    """The keys of the other brokers whose monitor holds a live lease: their queues are theirs."""
    live = Lease.objects.filter(name__startswith=LEASE_PREFIX, expires__gt=timezone.now())
    return {name.removeprefix(LEASE_PREFIX) for name in live.values_list("name", flat=True)} - {key}


def register_watched() -> None:
    """Put this process's TASKSTORE_WATCH_QUEUES on the deployment's list (a queue row each, of
    this broker, depth unknown until read), so whichever process reads this broker's depths
    reads them too.

    Run every round, not once: a row deleted since (in the admin, or by a database reset) would
    otherwise drop the queue from the reader's list while this process still watches it. One
    query when every row is there."""
    watched = conf.watch_queues()
    if not watched:
        return
    present = dict(QueueRecord.objects.filter(name__in=watched).values_list("name", "broker_key"))
    missing = [name for name in watched if name not in present]
    unclaimed = [name for name in watched if present.get(name) == ""]
    if not missing and not unclaimed:
        return
    key = broker_key()
    if missing:
        now = timezone.now()
        QueueRecord.objects.bulk_create(
            [QueueRecord(name=name, broker_key=key, date_updated=now) for name in missing],
            ignore_conflicts=True,
        )
    if unclaimed:
        QueueRecord.objects.filter(name__in=unclaimed, broker_key="").update(broker_key=key)


def queue_names(key: str | None = None) -> list[str]:
    """The queues of this process's broker to watch: the default queue, the configured ones,
    TASKSTORE_WATCH_QUEUES, every queue a worker on this broker consumes, and every queue already
    on the list for this broker; less the ones another broker's live monitor reads."""
    app = current_app
    key = key if key is not None else broker_key()
    ours = ("", key)
    names = {app.conf.task_default_queue, *conf.watch_queues()}
    names.update(QueueRecord.objects.filter(broker_key__in=ours).values_list("name", flat=True))
    names.update(q.name for q in app.conf.task_queues or [])
    for queues in WorkerRecord.objects.filter(broker_key__in=ours).values_list("queues", flat=True):
        names.update(q for q in queues or [] if isinstance(q, str))
    elsewhere = read_elsewhere(key)
    if elsewhere:
        names -= set(QueueRecord.objects.filter(broker_key__in=elsewhere).values_list("name", flat=True))
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
    """Read the depth of every queue this broker's monitor watches; record and push the ones
    that changed."""
    key = broker_key()
    names = queue_names(key)
    try:
        transport, depths = read_depths(names)
    except (OperationalError, OSError) as exc:
        logger.warning("Could not read queue depths from the broker: %s", exc)
        transport, depths = "", dict.fromkeys(names)
    elsewhere = read_elsewhere(key)
    saved = (save(name, transport, depth, key, elsewhere) for name, depth in depths.items())
    return [d for d in saved if d]


def save(
    name: str, transport: str, depth: int | None, key: str, elsewhere: set[str]
) -> dict[str, Any] | None:
    """Record one queue's depth, read on broker ``key``; a new version (pushed) only when it
    changed. A row that a live monitor of another broker (``elsewhere``) reads is left alone:
    it may have taken the queue since the list was read."""
    now = timezone.now()
    with transaction.atomic():
        row = QueueRecord.objects.select_for_update().filter(name=name).first()
        if row is not None and row.broker_key in elsewhere:
            return None
        if row is not None and row.depth == depth and row.broker == transport:
            if row.broker_key != key:
                QueueRecord.objects.filter(name=name).update(broker_key=key)
            return None
        row = row or QueueRecord(name=name)
        row.depth, row.broker, row.broker_key, row.date_updated = depth, transport, key, now
        row.version += 1
        row.save()
        document = queue_document(row)
        push.on_commit(push.MESSAGE_QUEUE, document)
    return document


def purge(name: str) -> int:
    """Delete every message waiting in queue ``name``; return how many there were."""
    if name not in queue_names():
        raise UnknownQueue(
            f"No queue named {name!r} is configured or consumed by a known worker on this broker."
        )
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        channel: Any = conn.channel()
        try:
            return int(channel.queue_purge(name) or 0)
        except ChannelError:
            return 0  # the broker has no such queue: nothing was waiting
        finally:
            _close(channel)
