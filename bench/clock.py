"""One clock for the bench's processes, and a steady schedule on it."""

from __future__ import annotations

import time


def now() -> float:
    """CLOCK_MONOTONIC in seconds: one clock for every process on the machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def pace(start: float, index: int, interval: float) -> None:
    """Sleep until the ``index``-th tick of a steady schedule that began at ``start``."""
    delay = start + index * interval - now()
    if delay > 0:
        time.sleep(delay)
