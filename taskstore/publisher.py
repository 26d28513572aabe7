"""Publishing recorded transitions to the channel layer, from any kind of process.

Calling ``async_to_sync(layer.group_send)`` per event from a worker builds a new event loop and
a new Redis connection pool every time (channels_redis #125, #332). Instead each process sends
through one long-lived event loop:

* in an ASGI server process, the server's own loop (code running in a ``sync_to_async`` thread
  knows it; the ASGI application also registers it with :meth:`Publisher.bind_loop`), which an
  in-memory channel layer requires;
* anywhere else (Celery worker processes, scripts, WSGI views): with channels-redis' layers, the
  calling thread itself, with short timeouts (taskstore.blocking_send); with other layers, and
  for what the calling thread could not send, one background thread per process.

Messages from one process leave in the order they were published. A send that fails (Redis
restarting) is retried for a while and then dropped: the database holds every transition, and
subscribers fill gaps from it.

The process's publisher is :data:`publisher`, process-wide on purpose: that order holds only for
messages that go through one queue per loop, and a worker must not start a sending thread per
caller. It starts afresh by itself in a forked child; :meth:`Publisher.reset` does the same on
demand (a test, an embedding that restarts its loops).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

from taskstore import blocking_send, core_groups, pubsub_batch
from taskstore.backoff import Backoff
from taskstore.calling_loop import calling_loop

logger = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]

SEND_RETRY_SECONDS = 15.0
# Pauses between attempts of a failed send (within SEND_RETRY_SECONDS).
SEND_BACKOFF = Backoff(first=0.1, cap=2.0)
# Messages sent in one go at most when several transitions queued up.
MAX_COALESCED = 500
# Groups sent to side by side at most (with the core layer, each may take a Redis connection).
CONCURRENT_GROUP_SENDS = 16


class _Sender:
    """Drains one loop's queue of message batches, in order."""

    def __init__(self, publisher: Publisher, loop: asyncio.AbstractEventLoop) -> None:
        self.publisher = publisher
        self.loop = loop
        self.queue: asyncio.Queue[list[Message]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def put(self, batch: list[Message]) -> None:
        # Runs on self.loop.
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain())
        self.queue.put_nowait(batch)

    async def _drain(self) -> None:
        while True:
            # Whatever queued meanwhile goes out with it: one round trip for many transitions
            # (the pub/sub layer's one script; the core layer's two, taskstore.core_groups).
            batch = await self.queue.get()
            layer = get_channel_layer()
            if pubsub_batch.supports(layer) or core_groups.supports(layer):
                while not self.queue.empty() and len(batch) < MAX_COALESCED:
                    batch = batch + self.queue.get_nowait()
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Dropping %d channel-layer messages", len(batch))
            finally:
                self.publisher._done(len(batch))

    async def _send(self, batch: list[Message]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        pending = list(batch)
        pauses = SEND_BACKOFF.delays()
        deadline = self.loop.time() + SEND_RETRY_SECONDS
        while pending:
            # One script per Redis host for the batch on channels-redis' layers; group_send on any other.
            batched = await pubsub_batch.send(layer, pending)
            if batched is None:
                batched = await core_groups.send(layer, pending)
            results: list[Any] = batched if batched is not None else await _in_order_per_group(layer, pending)
            failed = [m for m, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
            if not failed:
                return
            error = next(r for r in results if isinstance(r, Exception))
            if self.loop.time() >= deadline:
                raise error
            logger.warning("Sending to the channel layer failed (%s); retrying", error)
            pending = failed
            await asyncio.sleep(next(pauses))


async def _in_order_per_group(layer: Any, messages: list[Message]) -> list[Any]:
    """``group_send`` each message; groups side by side, each group's messages in order (a batch
    may hold several transitions of one task). One result per message: None or the error."""
    by_group: dict[str, list[int]] = {}
    for index, (group, _) in enumerate(messages):
        by_group.setdefault(group, []).append(index)
    results: list[Any] = [None] * len(messages)
    slots = asyncio.Semaphore(CONCURRENT_GROUP_SENDS)

    async def send_group(indexes: list[int]) -> None:
        async with slots:
            await send_in_order(indexes)

    async def send_in_order(indexes: list[int]) -> None:
        for position, index in enumerate(indexes):
            group, message = messages[index]
            try:
                await layer.group_send(group, message)
            except Exception as error:  # the rest of this group waits for the retry, in order
                for later in indexes[position:]:
                    results[later] = error
                return

    await asyncio.gather(*(send_group(indexes) for indexes in by_group.values()))
    return results


class Publisher:
    """Hands batches of ``(group, message)`` to the channel layer without blocking the caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._senders: dict[asyncio.AbstractEventLoop, _Sender] = {}
        self._home_loop: asyncio.AbstractEventLoop | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        # The calling thread's sender, and the layer it was decided for (None when that layer
        # is sent to from the sending thread only): decided once per layer, not per publish.
        self._blocking: blocking_send.BlockingSender | None = None
        self._blocking_for: Any = None
        self._blocking_lock = threading.RLock()

    def reset(self, timeout: float = 5.0) -> bool:
        """Start afresh: wait up to ``timeout`` seconds for what is queued, stop the publisher's
        own sending thread, and forget the loops, senders and pending count, so the next publish
        picks its loop again. Returns whether everything queued was sent."""
        sent = self.flush(timeout)
        with self._lock:
            own, self._thread_loop, self._home_loop = self._thread_loop, None, None
            senders, self._senders = self._senders, {}
            self._pending = 0
            self._idle.notify_all()
            blocking, self._blocking, self._blocking_for = self._blocking, None, None
        if blocking is not None:
            blocking.close()
        if _usable(own):
            assert own is not None
            drains = [s.task for s in senders.values() if s.loop is own and s.task is not None]
            asyncio.run_coroutine_threadsafe(_cancelled(drains), own).result(timeout)
            own.call_soon_threadsafe(own.stop)
        return sent

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send from ``loop`` (an ASGI server's loop) when no closer loop is known."""
        self._home_loop = loop

    def publish(self, messages: Iterable[Message]) -> None:
        """Queue ``messages`` for the channel layer and return at once; or, where no event loop
        runs and the layer allows it (taskstore.blocking_send), send them before returning."""
        batch = list(messages)
        if not batch:
            return
        self._after_fork()
        loop = self._closer_loop()
        if loop is None:
            if self._sent_here(batch):
                return
            loop = self._own_loop()
        self._queue(loop, batch)

    def _queue(self, loop: asyncio.AbstractEventLoop, batch: list[Message]) -> None:
        with self._lock:
            self._pending += len(batch)
            sender = self._senders.get(loop)
            if sender is None:
                sender = self._senders[loop] = _Sender(self, loop)
        try:
            loop.call_soon_threadsafe(sender.put, batch)
        except RuntimeError:  # the loop closed under us: send from our own thread instead
            with self._lock:
                self._senders.pop(loop, None)
            self._done(len(batch))
            if loop is self._home_loop:
                self._home_loop = None
            self.publish(batch)

    def _sent_here(self, batch: list[Message]) -> bool:
        """Send ``batch`` from the calling thread, unless the layer cannot be sent to from here
        or earlier batches still wait on the sending thread (they leave first); whatever fails
        goes to the sending thread, which retries it. Returns whether the batch was dealt with."""
        layer = get_channel_layer()
        if self._blocking_for is not layer:
            if self._blocking is not None:  # the layer was replaced (settings changed)
                self._blocking.close()
            self._blocking, self._blocking_for = blocking_send.for_layer(layer), layer
        sender = self._blocking
        if sender is None:
            return False
        # One batch at a time, so the process's messages leave in order. Reentrant: queueing what
        # failed publishes again if the sending thread's loop closed meanwhile.
        with self._blocking_lock:
            if self._pending:
                return False
            try:
                failed = sender.send(batch)
            except Exception:  # as the sending thread does: publishing never raises to its caller
                logger.exception("Dropping %d channel-layer messages", len(batch))
                return True
            if failed is None:
                return False
            if failed:
                logger.debug("%d channel-layer messages go to the sending thread", len(failed))
                self._queue(self._own_loop(), failed)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message was sent (or dropped); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            if self._pending <= 0:
                self._pending = 0
                self._idle.notify_all()

    def _closer_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop to send from when there is one nearer than the publisher's own thread."""
        outer = calling_loop()  # sync code that sync_to_async runs: its caller's loop
        if _usable(outer):
            return outer
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            return running
        if _usable(self._home_loop):
            return self._home_loop
        return None

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if _usable(self._thread_loop):
                return self._thread_loop  # type: ignore[return-value]
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()
                loop.close()  # stopped by reset()

            threading.Thread(target=run, name="taskstore-publisher", daemon=True).start()
            ready.wait()
            self._thread_loop = loop
            return loop

    def _after_fork(self) -> None:
        # A forked child (a prefork pool process) inherits the parent's bookkeeping but not its
        # threads: start afresh.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._idle = threading.Condition(self._lock)
            self._pending = 0
            self._senders = {}
            self._thread_loop = None
            self._home_loop = None
            self._blocking = self._blocking_for = None  # its clients' sockets are the parent's
            self._blocking_lock = threading.RLock()
            # The parent's channel layer may come along: channels-redis keeps a connection pool
            # per event loop, and this process sends from loops of its own, so it makes its own.


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _usable(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and not loop.is_closed() and loop.is_running()


publisher = Publisher()


@atexit.register
def _flush_at_exit() -> None:
    if publisher._pid == os.getpid():
        publisher.flush(timeout=5.0)
