"""The periodic check of task subscriptions, once per task and process rather than per socket.

The channel layer may drop a message (channels-redis over capacity, the pub/sub layer by design),
and a final version that is lost has no later one to reveal the gap. So every
TASKSTORE_RECONCILE_INTERVAL seconds the recorded versions of the tasks being followed are read
and any subscription found behind is filled from the event rows.

Each socket used to do that for its own tasks: a thousand sockets following one task made two
hundred checks a second at the default interval, about 15% of the server's CPU while it
streamed (docs/benchmarks.md). A :class:`Watch` reads each followed task's version once per
interval for all the process's sockets, in one query, and asks only the sockets found behind to
fill. The promise is unchanged: a lost version arrives within two intervals (each socket fills
up to what the database held at the previous check, as before).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from taskstore import conf
from taskstore.backoff import Backoff
from taskstore.consumers import queries
from taskstore.consumers.delivery import TaskStream

logger = logging.getLogger(__name__)

# Longest pause between rounds after repeated failures (the database away); as a socket's check.
MAX_BACKOFF = 60.0
# Task ids per version query: a process may follow many thousands of tasks.
CHUNK = 1000


class Follower(Protocol):
    """A socket whose task subscriptions the watch checks."""

    task_streams: dict[str, TaskStream]

    async def fill_recorded(self, behind: dict[str, int]) -> None:
        """Send the recorded versions of each task in ``behind``, up to its version, that the
        socket's stream of it has not sent."""


class Watch:
    """The task subscriptions of one event loop's sockets, checked against the database."""

    def __init__(self) -> None:
        # task id -> the sockets following it (a dict as an ordered set).
        self.followers: dict[str, dict[Follower, None]] = {}
        # task id -> the version the database held at the previous round.
        self.recorded: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.fills: set[asyncio.Task[None]] = set()
        self.rounds = 0  # observable: rounds made

    def follow(self, task_id: str, follower: Follower) -> None:
        """Check ``follower``'s stream of ``task_id`` from now on (until it is done or unfollowed)."""
        if conf.reconcile_interval() <= 0:
            return
        self.followers.setdefault(task_id, {})[follower] = None
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def unfollow(self, task_id: str, follower: Follower) -> None:
        """Stop checking ``follower``'s stream of ``task_id``."""
        following = self.followers.get(task_id)
        if following is None:
            return
        following.pop(follower, None)
        if not following:
            del self.followers[task_id]
            self.recorded.pop(task_id, None)
        if not self.followers and self.task is not None and self.task is not asyncio.current_task():
            # Nothing left to check: end the round waiting (a new follower starts another).
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        backoffs, backoff = None, 0.0
        while self.followers:
            interval = conf.reconcile_interval()
            if interval <= 0:
                return
            await asyncio.sleep(backoff or interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                # After a failed round the next waits twice the interval, then twice that, up to the cap.
                backoffs = backoffs or Backoff(first=min(2 * interval, MAX_BACKOFF), cap=MAX_BACKOFF)
                backoff = backoffs.after(backoff)
                logger.exception(
                    "The periodic check of task subscriptions failed; next try in %.1fs", backoff
                )
            else:
                backoff = 0.0

    async def check(self) -> None:
        """One round: read the versions of the unfinished tasks followed, and have every socket
        that is behind what the database held at the previous round fill up to it."""
        self.rounds += 1
        unfinished = [
            task_id for task_id, following in self.followers.items() if _waiting(task_id, following)
        ]
        found: dict[str, int] = {}
        for start in range(0, len(unfinished), CHUNK):
            found.update(await queries.task_versions(unfinished[start : start + CHUNK]))
        for task_id, version in found.items():
            following = self.followers.get(task_id)
            if following is None:
                continue  # everyone left while the query ran
            earlier, self.recorded[task_id] = self.recorded.get(task_id), version
            if earlier is None:
                continue
            upto = min(earlier, version)
            for follower in following:
                stream = follower.task_streams.get(task_id)
                if stream is not None and not stream.done and 0 <= stream.sent_version < upto:
                    self._fill(follower, {task_id: upto})

    def _fill(self, follower: Follower, behind: dict[str, int]) -> None:
        # Each as a task of its own: a socket waiting for its lock holds up no other.
        fill = asyncio.create_task(follower.fill_recorded(behind))
        self.fills.add(fill)
        fill.add_done_callback(self._filled)

    def _filled(self, fill: asyncio.Task[None]) -> None:
        self.fills.discard(fill)
        if not fill.cancelled() and fill.exception() is not None:
            logger.error("Filling a subscription from the database failed", exc_info=fill.exception())


def _waiting(task_id: str, following: dict[Follower, None]) -> bool:
    # Whether any follower's stream of the task can still receive a version.
    for follower in following:
        stream = follower.task_streams.get(task_id)
        if stream is not None and not stream.done:
            return True
    return False


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch] = weakref.WeakKeyDictionary()


def watch() -> Watch:
    """The watch of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _watches.get(loop)
    if found is None:
        found = _watches[loop] = Watch()
    return found
