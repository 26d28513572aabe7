"""Channel-layer calls that outlast the layer going away (a Redis restart, a network cut).

The database is the source of truth, and whoever listens on the layer (a WebSocket consumer,
``taskstore.wait``) also re-reads it periodically, so a listener needs the layer to be fast, not
to be correct. When the layer fails, a listener therefore carries on: joins that failed are made
again by the periodic check, which also finds what the layer did not deliver, and live delivery
resumes once the layer is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from taskstore.backoff import Backoff

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
T = TypeVar("T")

# Pauses between attempts to receive from a failing layer.
RECEIVE_BACKOFF = Backoff(first=0.5, cap=10.0)
# How long a cancelled caller gives its receive to wind down (normally one loop turn) before
# leaving it behind.
CANCEL_GRACE = 1.0
# While the layer is down every socket fails at every check: log one warning per this many
# seconds for the whole process, the rest at debug level. (Only the logging is process-wide:
# which listener may have missed messages is kept per channel-layer membership, by
# taskstore.fanout.)
WARN_EVERY = 10.0

_last_warning = 0.0


def report(what: str, error: BaseException) -> None:
    """Log a failed layer call, as a warning at most once per WARN_EVERY seconds."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        logger.warning(
            "Channel layer unavailable (%s: %s); until it is back, listeners are kept up to date "
            "from the database by their periodic check",
            what,
            error,
        )
    else:
        logger.debug("Channel layer call failed (%s): %s", what, error)


def tolerant(receive: Receive, failed: Callable[[], None] | None = None) -> Receive:
    """Wrap a layer ``receive`` so that layer errors are waited out, not raised (each one
    reported, and ``failed`` called: messages may have been lost meanwhile).

    A cancelled caller (a socket closing, a timeout) cancels the receive and waits for it to wind
    down, which keeps the layer's bookkeeping in order before the next receive on the same
    channel, but for CANCEL_GRACE seconds at most (see :func:`outcome_of`).
    """

    async def next_message() -> dict[str, Any]:
        pauses = RECEIVE_BACKOFF.delays()
        while True:
            attempt = await outcome_of(receive(), grace=CANCEL_GRACE)
            error = attempt.exception()
            if error is None:
                return attempt.result()
            report("receive", error)
            if failed is not None:
                failed()
            await asyncio.sleep(next(pauses))

    return next_message


async def outcome_of(call: Awaitable[T], grace: float = 0.0) -> asyncio.Future[T]:
    """Run a layer call as a task of its own and return it, finished (with a result or an error).

    The caller only waits on the task, so cancelling the caller always works. Awaiting the call
    directly would not be enough: on Python 3.11, ``asyncio.wait_for`` loses a cancellation that
    arrives as the operation it waits on completes (CPython gh-86296), and redis-py sends every
    command through it when ``socket_timeout`` is set. A lost cancellation left a consumer
    waiting forever on a receive that went on reading, and its socket open with nothing behind
    it. A cancelled caller gives the call ``grace`` seconds to wind down, then leaves it.
    """
    attempt = asyncio.ensure_future(call)
    attempt.add_done_callback(_retrieve)
    try:
        await asyncio.wait({attempt})
    except asyncio.CancelledError:
        attempt.cancel()
        if grace > 0:
            await asyncio.wait({attempt}, timeout=grace)
        raise
    if attempt.cancelled():
        raise asyncio.CancelledError
    return attempt


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Marks an abandoned attempt's error as seen, so asyncio does not log it a second time.
    if not task.cancelled():
        task.exception()


async def one_at_a_time(calls: Iterable[Awaitable[Any]], what: str) -> int:
    """Make layer calls one after another (each :func:`outcome_of`); report failures, return how many.

    Not ``gather``: channels-redis opens a Redis connection for every call in flight at once, and
    opening a hundred of them at the same moment stalls the event loop for every socket of the
    process (measured: 150-200 ms of delay for live updates). One at a time, each call yields.
    """
    failed = 0
    for call in calls:
        error = (await outcome_of(call)).exception()
        if error is not None:
            failed += 1
            report(what, error)
    return failed
