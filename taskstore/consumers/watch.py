"""The periodic checks of what sockets follow, made once per process rather than once per socket.

Every TASKSTORE_RECONCILE_INTERVAL seconds two things are read again from the database:

* the recorded version of each task a socket follows: the channel layer may drop a message
  (channels-redis over capacity, the pub/sub layer by design), and a final version that is lost
  has no later one to reveal the gap, so a subscription found behind is filled from the event
  rows (:class:`TaskWatch`);
* the session and the user behind each socket opened by a logged-in user, so that what an ended
  session granted ends with it (taskstore.sessions; :class:`SessionWatch`).

Each socket used to make both checks for itself: a thousand sockets following one task made two
hundred checks a second at the default interval, about 15% of the server's CPU while it
streamed (docs/benchmarks.md). A watch makes one round per interval for all the sockets of its
event loop, with one read for everything they follow, and turns only to the sockets whose
answer changed. The promises are unchanged: a lost version arrives within two intervals (each
socket fills up to what the database held at the previous round, as before), and an ended
session is noticed within one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from taskstore import conf
from taskstore.backoff import Backoff
from taskstore.consumers import queries
from taskstore.consumers.delivery import TaskStream
from taskstore.permissions import Viewer
from taskstore.sessions import Grant

logger = logging.getLogger(__name__)

# Longest pause between periodic checks after repeated failures (the database away).
MAX_BACKOFF = 60.0
# Keys per query: a process may follow many thousands of tasks.
CHUNK = 1000

K = TypeVar("K", bound=Hashable)
F = TypeVar("F")


class Watch(Generic[K, F]):
    """Followers of keys, all checked in one round every interval (subclasses make the round)."""

    # Whether failed rounds space out (twice the interval, doubling up to MAX_BACKOFF) rather
    # than retry every interval.
    backs_off = True
    what = "check"

    def __init__(self) -> None:
        self.followers: dict[K, dict[F, None]] = {}  # key -> its followers (an ordered set)
        self.task: asyncio.Task[None] | None = None
        self.actions: set[asyncio.Task[None]] = set()
        self.rounds = 0  # observable: rounds made

    def follow(self, key: K, follower: F) -> None:
        """Check ``key`` for ``follower`` from the next round on."""
        if conf.reconcile_interval() <= 0:
            return
        self.followers.setdefault(key, {})[follower] = None
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def unfollow(self, key: K, follower: F) -> None:
        """Stop checking ``key`` for ``follower``."""
        following = self.followers.get(key)
        if following is None:
            return
        following.pop(follower, None)
        if not following:
            del self.followers[key]
            self.forget(key)
        if not self.followers and self.task is not None and self.task is not asyncio.current_task():
            # Nothing left to check: end the wait for the next round (a new follower starts one).
            self.task.cancel()
            self.task = None

    def forget(self, key: K) -> None:
        """Drop what the rounds kept of ``key``, which nobody follows any more."""

    async def check(self) -> None:
        """One round for every key followed."""
        raise NotImplementedError

    async def read(self, keys: list[K], fetch: Callable[[list[K]], Awaitable[dict[K, Any]]]) -> dict[K, Any]:
        """``fetch`` of ``keys``, CHUNK at a time."""
        found: dict[K, Any] = {}
        for start in range(0, len(keys), CHUNK):
            found.update(await fetch(keys[start : start + CHUNK]))
        return found

    def act(self, action: Awaitable[None]) -> None:
        """Run what a round found to do for one follower, as a task of its own: a socket waiting
        for its lock holds up no other."""
        task = asyncio.ensure_future(action)
        self.actions.add(task)
        task.add_done_callback(self._acted)

    def _acted(self, task: asyncio.Future[None]) -> None:
        self.actions.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            logger.error("Acting on the periodic %s failed", self.what, exc_info=task.exception())

    async def _run(self) -> None:
        backoffs, backoff = None, 0.0
        while self.followers:
            interval = conf.reconcile_interval()
            if interval <= 0:
                return
            await asyncio.sleep(backoff or interval)
            self.rounds += 1
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self.backs_off:
                    logger.exception("The periodic %s failed; next try in one interval", self.what)
                    continue
                backoffs = backoffs or failure_backoffs(interval)
                backoff = backoffs.after(backoff)
                logger.exception("The periodic %s failed; next try in %.1fs", self.what, backoff)
            else:
                backoff = 0.0


def failure_backoffs(interval: float) -> Backoff:
    """The pauses of a periodic check after failures: twice the interval, then twice that, up to
    MAX_BACKOFF (a round per process, and a socket's own check, alike)."""
    return Backoff(first=min(2 * interval, MAX_BACKOFF), cap=MAX_BACKOFF)


class TaskFollower(Protocol):
    """A socket whose task subscriptions the task watch checks."""

    task_streams: dict[str, TaskStream]

    async def fill_recorded(self, behind: dict[str, int]) -> None:
        """Send the recorded versions of each task in ``behind``, up to its version, that the
        socket's stream of it has not sent."""


class TaskWatch(Watch[str, TaskFollower]):
    """The task subscriptions of one event loop's sockets, checked against the recorded versions."""

    what = "check of task subscriptions"

    def __init__(self) -> None:
        super().__init__()
        self.recorded: dict[str, int] = {}  # task id -> its version at the previous round

    def forget(self, key: str) -> None:
        """Drop the version kept of a task nobody follows any more."""
        self.recorded.pop(key, None)

    async def check(self) -> None:
        """Read the versions of the unfinished tasks followed, and have every socket that is
        behind what the database held at the previous round fill up to it."""
        unfinished = [
            task_id for task_id, following in self.followers.items() if _waiting(task_id, following)
        ]
        found = await self.read(unfinished, queries.task_versions)
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
                    self.act(follower.fill_recorded({task_id: upto}))


def _waiting(task_id: str, following: dict[TaskFollower, None]) -> bool:
    # Whether any follower's stream of the task can still receive a version.
    for follower in following:
        stream = follower.task_streams.get(task_id)
        if stream is not None and not stream.done:
            return True
    return False


class SessionFollower(Protocol):
    """A socket opened by a logged-in user."""

    viewer: Viewer

    async def check_session(self, ended: bool = False) -> None:
        """Read the session and the user again; end what they no longer grant."""


class SessionWatch(Watch[Grant, SessionFollower]):
    """The grants of one event loop's sockets, checked against the sessions and users.

    A round that fails (the database away) is tried again at the next interval, without backing
    off: that delay is what docs/protocol.md promises for a logout.
    """

    backs_off = False
    what = "session check"

    async def check(self) -> None:
        """Read every grant's session and user again; the sockets whose viewer changed check
        their own (which reads once more, and ends what is no longer granted)."""
        found = await self.read(list(self.followers), queries.recheck_grants)
        for grant, viewer in found.items():
            for follower in list(self.followers.get(grant, ())):
                if follower.viewer != viewer:
                    self.act(follower.check_session())


W = TypeVar("W", bound=Watch[Any, Any])
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type[Any], Any]] = (
    weakref.WeakKeyDictionary()
)


def of_loop(kind: type[W]) -> W:
    """The running event loop's watch of ``kind`` (TaskWatch or SessionWatch)."""
    watches = _watches.setdefault(asyncio.get_running_loop(), {})
    found = watches.get(kind)
    if found is None:
        found = watches[kind] = kind()
    return found  # type: ignore[no-any-return]
