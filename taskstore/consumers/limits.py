"""Per-connection rate limiting of client frames: a token bucket and a flood meter."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class Verdict(enum.Enum):
    """What to do with one client frame."""

    ACCEPT = "accept"
    REFUSE = "refuse"  # answer with a rate_limited error frame
    CLOSE = "close"  # the client keeps flooding: close the socket


class FrameLimiter:
    """Allows ``rate`` frames per second with bursts of ``burst``.

    A frame that finds the bucket empty is refused. Refused frames fill a second meter that
    drains at ``rate`` per second; when it passes ``burst`` the client has been sending at more
    than twice the allowed rate for a while and ignoring the errors, so the socket closes.
    """

    __slots__ = ("burst", "clock", "last", "rate", "refused", "tokens")  # one per socket

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.tokens = self.burst
        self.refused = 0.0
        self.last = clock()

    def take(self) -> Verdict:
        """Account for one client frame and say what to do with it."""
        now = self.clock()
        elapsed = max(0.0, now - self.last)
        self.last = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.refused = max(0.0, self.refused - elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.ACCEPT
        self.refused += 1.0
        return Verdict.CLOSE if self.refused > self.burst else Verdict.REFUSE
