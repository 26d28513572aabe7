"""The push side's figures (open sockets, frames sent, gaps filled, slow-consumer closes),
counted in each server process and flushed to its own ``PushCounters`` row by the monitor loop.

/metrics sums the rows, so every server process reports the same totals and none counts
another's frames twice; a process's row keeps its totals after it exits (counters never go
down), and its open sockets count only while it flushes (three TASKSTORE_MONITOR_INTERVALs).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from taskstore import conf
from taskstore.consumers.delivery import counters as delivery_counters
from taskstore.operations.models import PushCounters

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_process: dict[str, Any] = {}

# The delivery module's own counters: versions filled from the database because the channel
# layer lost or reordered them, and versions the periodic check found.
GAP_KEYS = ("filled", "reconciled")
SLOW_CLOSE_KEY = "slow_consumer_closes"


def opened() -> None:
    """A socket was accepted."""
    with _lock:
        _counts["open"] += 1


def closed() -> None:
    """A socket counted by :func:`opened` ended."""
    with _lock:
        _counts["open"] -= 1


def frame_sent() -> None:
    """A frame went to a client."""
    _counts["frames"] += 1  # a lost increment between threads costs one frame: no lock on the hot path


def slow_consumer_closed() -> None:
    """A socket was closed because it stopped reading while frames piled up for it."""
    delivery_counters[SLOW_CLOSE_KEY] += 1


def _key() -> str:
    if _process.get("pid") != os.getpid():
        _process.update(pid=os.getpid(), key=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    return str(_process["key"])


def flush() -> None:
    """Write this process's figures to its row (only in processes that served a socket)."""
    with _lock:
        values = {
            "open_sockets": max(_counts["open"], 0),
            "frames_sent": _counts["frames"],
            "gaps_filled": sum(delivery_counters[k] for k in GAP_KEYS),
            "slow_consumer_closes": delivery_counters[SLOW_CLOSE_KEY],
        }
    if not any(values.values()) and not _process.get("flushed"):
        return
    PushCounters.objects.update_or_create(process=_key(), defaults={**values, "seen": timezone.now()})
    _process["flushed"] = True


def totals() -> dict[str, int]:
    """The sums over every server process's row (open sockets: live processes only)."""
    fresh = timezone.now() - timedelta(seconds=3 * conf.monitor_interval() + 1)
    rows = PushCounters.objects.aggregate(
        frames_sent=Sum("frames_sent"),
        gaps_filled=Sum("gaps_filled"),
        slow_consumer_closes=Sum("slow_consumer_closes"),
    )
    live = PushCounters.objects.filter(seen__gte=fresh).aggregate(open_sockets=Sum("open_sockets"))
    return {k: int(v or 0) for k, v in {**rows, **live}.items()}


@atexit.register
def _closed_at_exit() -> None:
    """A server that stops cleanly has no sockets open: say so now, not three rounds later."""
    if not _process.get("flushed") or _process.get("pid") != os.getpid():
        return
    with _lock:
        _counts["open"] = 0
    try:
        flush()
    except Exception:
        logger.warning("Could not record this process's push counters at exit", exc_info=True)
