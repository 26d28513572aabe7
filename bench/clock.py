"""One clock for the bench's processes, and a steady schedule on it."""

from __future__ import annotations

import time
from typing import Any


def now() -> float:
    """CLOCK_MONOTONIC in seconds: one clock for every process on the machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def pace(start: float, index: int, interval: float) -> None:
    """Sleep until the ``index``-th tick of a steady schedule that began at ``start``."""
    delay = start + index * interval - now()
    if delay > 0:
        time.sleep(delay)


def stamp_commits() -> list[float]:
    """From now on, append the time of each of this process's recorder commits to the list
    returned: when the recorder's after-commit hook starts, before it hands the documents to the
    publisher (which, where no event loop runs, sends them before ``record()`` returns)."""
    from taskstore import recorder

    commits: list[float] = []
    after_commit = recorder._committed

    def stamped(documents: list[dict[str, Any]]) -> None:
        commits.append(now())
        after_commit(documents)

    recorder._committed = stamped  # type: ignore[assignment]
    return commits
