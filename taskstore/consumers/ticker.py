"""Every socket's periodic check, driven by one task per event loop.

A sleeping task per socket costs a task, its coroutine and a timer for each idle socket, most of
what a socket costs beyond the server's own share. Here each socket keeps only when its next
check is due; one task looks every few tenths of a second and starts the checks that are due,
each as a task of its own only while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

# How often the ticker looks for due checks, as a share of the interval (and at most, seconds):
# often enough that the checks due at one look are few, spread as their sockets' phases are.
TICK_SHARE = 0.02
MAX_TICK = 0.1

Check = Callable[[], Awaitable[float]]


class Ticker:
    """The periodic checks of one event loop's sockets."""

    def __init__(self) -> None:
        self.due: dict[Any, float] = {}  # member -> monotonic time of its next check
        self.checks: dict[Any, Check] = {}
        self.running: dict[Any, asyncio.Task[None]] = {}
        self.task: asyncio.Task[None] | None = None
        self.tick = MAX_TICK

    def add(self, member: Any, check: Check, first_in: float, interval: float) -> None:
        """Run ``check`` (which returns the seconds to the next run) ``first_in`` seconds from now."""
        self.due[member] = time.monotonic() + first_in
        self.checks[member] = check
        self.tick = min(self.tick, max(interval * TICK_SHARE, 0.01))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, member: Any) -> None:
        """Stop checking ``member``; a check of it that runs is cancelled (unless it is the caller)."""
        self.due.pop(member, None)
        self.checks.pop(member, None)
        running = self.running.pop(member, None)
        if running is not None and running is not asyncio.current_task():
            running.cancel()

    async def _run(self) -> None:
        while self.due:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for member, due in list(self.due.items()):
                if due <= now and member not in self.running:
                    self.running[member] = asyncio.create_task(self._check(member))

    async def _check(self, member: Any) -> None:
        delay = None
        try:
            delay = await self.checks[member]()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("A periodic check failed")
        finally:
            if self.running.get(member) is asyncio.current_task():
                del self.running[member]
            if member in self.due:
                if delay is None or delay <= 0:
                    self.discard(member)
                else:
                    self.due[member] = time.monotonic() + delay


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker() -> Ticker:
    """The ticker of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _tickers.get(loop)
    if found is None:
        found = _tickers[loop] = Ticker()
    return found
