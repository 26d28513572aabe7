"""Reads that many sockets of one process make at about the same time, made once.

A thousand sockets reconnecting at once each ask for the same task's versions since the same
point, and every socket's periodic check asks for the versions of the tasks it follows. Each of
those reads used to be a query of its own, one after another on Django's one database thread.
A :class:`Batched` read gathers the keys asked for while a query runs and fetches them all in
the next one. A caller is always answered by a query that began after it asked, so what it gets
is as fresh as a query of its own (a subscription reads after it joined the task's group).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Loop(Generic[K, V]):
    """The batches of one event loop: the query running, and the keys waiting for the next."""

    def __init__(self) -> None:
        self.running = False
        self.waiting: set[K] = set()
        self.answer: asyncio.Future[dict[K, V]] | None = None


class Batched(Generic[K, V]):
    """A read by keys whose concurrent callers share queries."""

    def __init__(self, fetch: Callable[[set[K]], Awaitable[dict[K, V]]]) -> None:
        self.fetch = fetch
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop[K, V]] = (
            weakref.WeakKeyDictionary()
        )
        self.queries = 0  # observable: how many fetches were made

    async def get(self, keys: Iterable[K]) -> dict[K, V]:
        """The values of ``keys`` that exist, from a query begun after this call."""
        wanted = set(keys)
        if not wanted:
            return {}
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _Loop()
        state.waiting |= wanted
        if state.answer is None:
            state.answer = loop.create_future()
        answer = state.answer
        if not state.running:
            self._start(loop, state)
        found = await asyncio.shield(answer)
        return {k: found[k] for k in wanted if k in found}

    def _start(self, loop: asyncio.AbstractEventLoop, state: _Loop[K, V]) -> None:
        keys, answer = state.waiting, state.answer
        assert answer is not None
        state.waiting, state.answer, state.running = set(), None, True
        self.queries += 1

        async def run() -> None:
            try:
                answer.set_result(await self.fetch(keys))
            except asyncio.CancelledError:
                answer.cancel()
                raise
            except Exception as error:
                answer.set_exception(error)
            finally:
                state.running = False
                if state.answer is not None:
                    self._start(loop, state)

        loop.create_task(run())
        # An answer nobody awaits any more (its sockets closed) must not log its error.
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())
