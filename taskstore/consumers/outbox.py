"""A socket's frames on their way out, bounded in bytes (TASKSTORE_SEND_BUFFER_BYTES).

A client that stops reading while its task streams would otherwise have every frame buffered for
it by the server, without end: daphne hands each ASGI send to Twisted, which keeps what the
kernel does not take; uvicorn's ``send`` waits for the client, so frames pile up in front of it.
Each socket therefore counts what it has queued and what the server still holds for it; past
the limit it drops its frames and closes with CLOSE_TOO_SLOW, and the client resumes with
``since`` (the database holds every version). Centrifugo and Phoenix close slow clients the same
way rather than let one of them grow a node's memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# An ASGI send callable: the servers and Channels give coroutine functions, which put() runs by hand.
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]

# How often a burst from the database looks whether the client took what was sent, seconds.
ROOM_POLL = 0.02
# A client that takes nothing of a burst for this long is closed as too slow, seconds.
ROOM_TIMEOUT = 30.0


class Outbox:
    """Frames queued for one socket, written in order by a task that runs only while some wait."""

    __slots__ = (
        "_bytes",
        "_direct",
        "_held_by_server",
        "_limit",
        "_overflow",
        "_queue",
        "_send",
        "_writer",
        "full",
    )

    def __init__(self, send: Send, limit: int, overflow: Callable[[], None]) -> None:
        self._send = send
        self._limit = limit
        self._overflow = overflow
        self._held_by_server = server_buffer(send)
        self._direct = direct_send(send)
        # Made when a send has to wait (a deque costs about 600 bytes: most sockets never need
        # one), dropped when the writer is done.
        self._queue: deque[tuple[dict[str, Any], int]] | None = None
        self._bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self.full = False  # the limit was passed: nothing more is queued

    def put(self, event: dict[str, Any], size: int = 0) -> None:
        """Queue an ASGI send ``event`` of ``size`` bytes (text frames); never waits.

        Past the limit the queue is dropped and ``overflow`` is called once.
        """
        if self.full:
            return
        if size and self._limit > 0 and self._bytes + size + self._held_by_server() > self._limit:
            self.full = True
            self._drop_queue()
            self._overflow()
            return
        if self._writer is not None:
            if self._queue is not None:  # (None once cancelled: the socket is gone)
                self._queue.append((event, size))
                self._bytes += size
            return
        if self._direct is not None and event["type"] == "websocket.send":
            self._direct(event)
            return
        # Nothing in flight: hand the event to the server here. daphne takes it without waiting,
        # so a frame needs no task of its own (a task per socket per message is most of what
        # fan-out would cost); a send that does wait (uvicorn's, for a client not reading) goes
        # on in a writer task, and later frames queue behind it.
        sending = self._send(event)
        try:
            waiting_on = sending.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("Sending a frame failed")
            return
        self._queue = deque()
        self._writer = asyncio.ensure_future(self._finish(sending, waiting_on))

    async def room(self, threshold: int, timeout: float = ROOM_TIMEOUT) -> None:
        """Wait until at most ``threshold`` bytes are pending (a client reading a burst).

        The server says nothing when its buffer drains, so this looks again every
        ROOM_POLL seconds. A client that takes nothing for ``timeout`` seconds is too slow.
        """
        if self._limit <= 0:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.full and self.pending() > threshold:
            if asyncio.get_running_loop().time() >= deadline:
                self.full = True
                self._drop_queue()
                self._overflow()
                return
            await asyncio.sleep(ROOM_POLL)

    def pending(self) -> int:
        """Bytes queued here and held by the server for this socket."""
        return self._bytes + self._held_by_server()

    def cancel(self) -> None:
        """Drop what is queued (the socket is gone)."""
        self._drop_queue()
        if self._writer is not None:
            self._writer.cancel()

    async def _finish(self, sending: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        # Runs a send that ``put`` began by hand and that had to wait, as a task would: wait
        # for what it waits on, resume it, until it returns; then write what queued meanwhile.
        try:
            while True:
                try:
                    if isinstance(waiting_on, asyncio.Future):
                        waiting_on._asyncio_future_blocking = False
                        await asyncio.wait({waiting_on})
                    else:
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    sending.close()
                    raise
                try:
                    waiting_on = sending.send(None)
                except StopIteration:
                    break
        except asyncio.CancelledError:
            self._writer = None
            raise
        except Exception:
            logger.exception("Sending a frame failed")
        await self._write()

    async def _write(self) -> None:
        try:
            while self._queue:
                event, size = self._queue.popleft()
                self._bytes -= size
                await self._send(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Sending a frame failed; dropping the socket's queued frames")
        finally:
            self._writer = None
            self._drop_queue()

    def _drop_queue(self) -> None:
        self._queue = None
        self._bytes = 0


def _nothing() -> int:
    return 0


def _daphne_parts(send: Send) -> tuple[Any, Any] | None:
    """daphne's server and protocol behind ``send``, or None for another server.

    The one place that looks inside daphne's ``send``: ``partial(Server.handle_reply,
    protocol)``, reached through middleware that wrap it and keep it as ``real_send``
    (Channels' session middleware). Neither daphne nor the ASGI spec offers a way to hand a
    frame over without a coroutine, or to ask what the server still holds unsent (daphne
    buffers without bound for a client that stops reading: django/daphne#170, open);
    tests/test_library_internals.py fails if daphne or Channels change what this relies on.
    """
    for _ in range(8):
        if isinstance(send, functools.partial):
            server = getattr(send.func, "__self__", None)
            if send.args and getattr(send.func, "__name__", "") == "handle_reply" and server is not None:
                return server, send.args[0]
            return None
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return None
        send = inner
    return None


def direct_send(send: Send) -> Callable[[dict[str, Any]], None] | None:
    """A synchronous way to hand daphne a ``websocket.send`` event, or None for other servers.

    daphne's ``handle_reply`` coroutine checks that the connection is still there and passes the
    event to the protocol, without ever waiting; Channels' session middleware in between only
    acts on HTTP responses. Calling the protocol directly spares two coroutines per frame, which
    is most of what local fan-out adds per socket to what daphne itself costs.
    """
    parts = _daphne_parts(send)
    if parts is None:
        return None
    server, protocol = parts
    connections = getattr(server, "connections", None)
    if not isinstance(connections, dict) or not hasattr(protocol, "handle_reply"):
        return None

    def hand_over(event: dict[str, Any]) -> None:
        connection = connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return  # closed: daphne drops what is sent to it too
        protocol.handle_reply(event)

    return hand_over


def server_buffer(send: Send) -> Callable[[], int]:
    """A function giving the bytes the ASGI server holds unsent for the socket behind ``send``.

    daphne applies no backpressure to ``send``: it writes to the Twisted transport, which buffers
    whatever the kernel does not take. Its ``send`` is ``partial(server.handle_reply, protocol)``,
    reached through the middleware that wrap it (Channels' session middleware keeps the inner
    one as ``real_send``). Other servers (uvicorn) make ``send`` wait instead, which the outbox
    counts itself: for them this gives 0.
    """
    parts = _daphne_parts(send)
    transport = getattr(parts[1], "transport", None) if parts is not None else None
    if transport is None or not hasattr(transport, "dataBuffer"):
        return _nothing
    return functools.partial(_twisted_buffered, transport)


def _twisted_buffered(transport: Any) -> int:
    # twisted.internet.abstract.FileDescriptor: written but not yet taken by the kernel.
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return 0
