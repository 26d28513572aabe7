"""Celery worker signal handlers: a worker records itself online, beats, and goes offline.

``worker_ready`` and ``worker_shutdown`` fire in the worker's main process; the heartbeat is a
daemon thread there, so a SIGKILLed worker simply stops beating and the monitor
(:mod:`taskstore.operations.monitor`) records it lost once its lease runs out.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import threading
from datetime import datetime
from typing import Any

import celery
from celery import signals
from django.db import close_old_connections, connection

from taskstore import conf
from taskstore.operations import brokers, monitor, workers

logger = logging.getLogger(__name__)

_beating: dict[str, Any] = {}


def connect() -> None:
    """Connect the handlers (idempotent)."""
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="taskstore-worker-ready")
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False, dispatch_uid="taskstore-worker-shutdown")


def details(consumer: Any) -> dict[str, Any]:
    """What a worker says about itself: pid, pool, concurrency, queues, its broker, software
    versions."""
    controller = getattr(consumer, "controller", None)
    pool = getattr(controller, "pool_cls", None) or getattr(controller, "pool", None)
    pool_name = getattr(pool, "__module__", "") or ""
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = sorted({q.name for q in getattr(task_consumer, "queues", []) or []})
    if not queues:
        queues = sorted(consumer.app.amqp.queues.consume_from or {consumer.app.conf.task_default_queue})
    return {
        "pid": os.getpid(),
        "pool": pool_name.rsplit(".", 1)[-1] if pool_name else type(pool).__name__,
        "concurrency": getattr(controller, "concurrency", None),
        "queues": queues,
        "broker_key": brokers.broker_key(consumer.app),
        "software": {
            "celery": celery.__version__,
            "kombu": importlib.metadata.version("kombu"),
            "python": platform.python_version(),
            "system": platform.system(),
        },
    }


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Record the worker online and start its heartbeat (and this process's monitor)."""
    hostname = sender.hostname
    about = details(sender)
    try:
        document = workers.online(hostname, about)
    except Exception:
        logger.exception("Could not record worker %s online", hostname)
        return
    finally:
        connection.close()
    started = datetime.fromisoformat(document["started"].replace("Z", "+00:00")) if document else None
    if started is None:
        return
    stop = threading.Event()
    thread = threading.Thread(
        target=_beat, args=(hostname, started, about, stop), name="taskstore-heartbeat", daemon=True
    )
    _beating.update(hostname=hostname, started=started, stop=stop, thread=thread)
    thread.start()
    monitor.start()


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """A clean shutdown: stop the heartbeat, record the worker offline."""
    stop, thread = _beating.get("stop"), _beating.get("thread")
    if stop is None or thread is None:
        return
    stop.set()
    thread.join(timeout=10)
    monitor.stop()
    try:
        workers.offline(_beating["hostname"], _beating["started"])
    except Exception:
        logger.exception("Could not record worker %s offline", _beating["hostname"])
    finally:
        connection.close()
    from taskstore.publisher import publisher

    publisher.flush(timeout=5.0)


def _beat(hostname: str, started: datetime, about: dict[str, Any], stop: threading.Event) -> None:
    """The heartbeat loop: count, renew the lease when due; write only what changed."""
    while not stop.wait(conf.worker_heartbeat()):
        close_old_connections()
        try:
            workers.heartbeat(hostname, started, about)
        except Exception:
            # The database is away: the next beat tries again; a lease that runs out meanwhile
            # shows the worker lost, and the next successful beat brings it back online.
            logger.exception("Heartbeat of worker %s failed", hostname)
            connection.close()
    connection.close()
