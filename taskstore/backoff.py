"""Pauses between retries: each twice the last (or ``factor`` times), up to a cap, optionally
jittered so that many processes failing together do not retry together.

One definition for every retry loop (the recorder's writes, the publisher's sends, receives from
a failing channel layer, a socket's periodic check); each caller keeps its own limits, deadline
and logging, and sleeps as its kind of code does (``time.sleep`` or ``asyncio.sleep``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """A sequence of pauses: ``first``, then each ``factor`` times the last, never over ``cap``.

    With ``jitter`` (a fraction, 0 to 1) each pause is drawn from ``[p * (1 - jitter), p]``; the
    sequence itself grows from the unjittered pauses, so jitter never slows the growth.
    """

    first: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"Backoff needs 0 < first <= cap, got first={self.first}, cap={self.cap}")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff needs factor >= 1 and 0 <= jitter <= 1, got {self}")

    def delays(self) -> Iterator[float]:
        """The pauses to take before the 2nd, 3rd, ... attempt: endless, so the caller decides
        when to stop (a deadline, a number of attempts, success)."""
        pause = self.first
        while True:
            yield self._jittered(pause)
            pause = min(pause * self.factor, self.cap)

    def after(self, previous: float) -> float:
        """The pause that follows ``previous`` (0: none yet, so ``first``), for callers that keep
        the last pause between calls rather than an iterator."""
        pause = self.first if previous <= 0 else min(max(previous * self.factor, self.first), self.cap)
        return self._jittered(pause)

    def _jittered(self, pause: float) -> float:
        if not self.jitter:
            return pause
        return pause * (1 - self.jitter * random.random())
