"""The monitor: one round every TASKSTORE_MONITOR_INTERVAL seconds, run by one process at a time.

Every server (daphne) and worker process runs the loop in a daemon thread; a lease row
(``Lease`` named "monitor") decides which one does the round: it is taken with one conditional
``UPDATE`` when free or expired, and renewed by its holder each round. So the broker is read
once per interval for the whole deployment, not once per browser or per process, and the
rounds go on when the holder dies (another process takes the lease once it expires; a process that
exits the ordinary way gives it up at once).

A round: record lost workers, read queue depths, fold finished tasks into the metric totals.
Every process, holder or not, also flushes its push-side counters (open sockets, frames).

The lease is per broker (its name carries a digest of the broker's address, password left
out): processes that share a database but talk to different brokers each have their own
reader of queue depths, and each reads only its own broker's queues (see :mod:`brokers`). The other parts of a round are safe to run twice: each write locks its
row and checks again, and the totals' cursors advance under a lock.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from django.db import IntegrityError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from taskstore import conf
from taskstore.operations import brokers, pushstats, tally, workers
from taskstore.operations.models import Lease

logger = logging.getLogger(__name__)

# Longest pause after repeated failures (the database away).
MAX_BACKOFF = 60.0

_lock = threading.Lock()
_state: dict[str, object] = {}


def holder_id() -> str:
    """This process's name for the lease: host, pid and a start token (pids are reused)."""
    if _state.get("pid") != os.getpid():
        _state["pid"] = os.getpid()
        _state["holder"] = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return str(_state["holder"])


def lease_name() -> str:
    """The monitor lease of this process's broker."""
    return brokers.LEASE_PREFIX + brokers.broker_key()


def take_lease() -> bool:
    """Take or renew the monitor's lease; True when this process holds it for the round."""
    now = timezone.now()
    interval = conf.monitor_interval()
    me = holder_id()
    name = lease_name()
    until = now + timedelta(seconds=max(3 * interval, 2.0))
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(holder=me) | Q(expires__lt=now))
        .update(holder=me, expires=until)
    )
    if taken:
        return True
    if Lease.objects.filter(name=name).exists():
        return False
    try:
        Lease.objects.create(name=name, holder=me, expires=until)
    except IntegrityError:
        return False  # another process created it first
    return True


def tick() -> bool:
    """One round; True when this process held the lease and did the round's work."""
    pushstats.flush()
    brokers.register_watched()
    if not take_lease():
        return False
    workers.mark_lost()
    brokers.refresh()
    tally.fold()
    return True


def start() -> None:
    """Start this process's monitor thread, once per process."""
    with _lock:
        thread = _state.get("thread")
        if isinstance(thread, threading.Thread) and thread.is_alive() and _state.get("pid") == os.getpid():
            return
        holder_id()
        if _state.get("exit_hook") != os.getpid():
            # A server stopped the ordinary way (SIGTERM) gives the lease up as it exits, so the
            # next process need not wait for it to expire (three intervals).
            atexit.register(give_up_lease)
            _state["exit_hook"] = os.getpid()
        stop = threading.Event()
        thread = threading.Thread(target=_loop, args=(stop,), name="taskstore-monitor", daemon=True)
        _state.update(thread=thread, stop=stop)
        thread.start()


def stop() -> None:
    """Stop this process's monitor thread (a clean worker shutdown) and give the lease up."""
    with _lock:
        event, thread = _state.pop("stop", None), _state.pop("thread", None)
    if isinstance(event, threading.Event):
        event.set()
    if isinstance(thread, threading.Thread):
        thread.join(timeout=10)
    give_up_lease()


def give_up_lease() -> None:
    """Let another process take the monitor lease now, if this one holds it."""
    try:
        Lease.objects.filter(name=lease_name(), holder=holder_id()).update(expires=timezone.now())
    except Exception:
        logger.exception("Could not give up the monitor lease")
    finally:
        connection.close()


def _loop(stop: threading.Event) -> None:
    delay = conf.monitor_interval()
    while not stop.wait(delay):
        close_old_connections()
        try:
            tick()
        except Exception:
            delay = min(delay * 2, MAX_BACKOFF)
            logger.exception("The operations monitor round failed; next try in %.1fs", delay)
            connection.close()
        else:
            delay = conf.monitor_interval()
    connection.close()
