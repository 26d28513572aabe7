"""A fan-out hub's reads from channels-redis' core layer: one Redis key for all its channels,
drained many messages to a read.

The core layer's ``receive`` on a process's channel costs four round trips per message (a
clean-up script, ``BZPOPMIN``, a ``ZADD`` to a backup queue, then a ``ZPOPMIN`` of that backup
before the next read), each of them waiting its turn in a busy server's event loop. The backup
keeps a message whose receive is cancelled halfway. A hub's reads are never cancelled while the
server runs, and the sockets a lost message was for fill it from the database
(taskstore.consumers.delivery), so a hub reads its messages more simply: its channels share a
client prefix of their own, hence one Redis key, and one reader per hub takes every message
waiting there in one ``ZPOPMIN`` (lowest score first: the order the senders gave), blocking in
``BZPOPMIN`` only when none wait. A reader whose hub has no channels left ends after its current
read, so an idle server holds no blocking read on Redis; the hub's next join starts it again.

Channels named here are ordinary channels of the layer: ``group_add``, ``group_send`` and
taskstore.core_groups deliver to them as to any other. The key and the message format are the
layer's own, reached through attributes of channels-redis 4 that are not public API (``prefix``,
``consistent_hash``, ``connection``, ``deserialize``, ``brpop_timeout``); tests/test_core_groups.py
fails if they change, and without them the hub receives through ``layer.receive``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from taskstore import core_groups, layer_outages

logger = logging.getLogger(__name__)

# Messages taken off the key in one read at most.
READ_BATCH = 100

_INTERNALS = ("prefix", "consistent_hash", "connection", "deserialize", "brpop_timeout")

Deliver = Callable[[str, dict[str, Any]], None]


class Reader:
    """Names channels for one hub and delivers what arrives on them, by channel."""

    def __init__(
        self, layer: Any, deliver: Deliver, failed: Callable[[], None], wanted: Callable[[], bool]
    ) -> None:
        self.layer = layer
        self.deliver = deliver
        self.failed = failed
        # Whether any channel of this reader is still in use: when not, the reader ends.
        self.wanted = wanted
        # "specific.<own client prefix>!": every channel named here ends up in one key.
        self.process_name = f"specific.{uuid.uuid4().hex}!"
        self.task: asyncio.Task[None] | None = None

    def new_channel(self) -> str:
        """A channel of this reader (no Redis call); its messages reach ``deliver`` once the
        reader runs (:meth:`ensure_running`)."""
        return f"{self.process_name}{uuid.uuid4().hex}"

    def ensure_running(self) -> None:
        """Start reading on the running loop, unless it already does (or start again after the
        reading task ended)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        pauses = layer_outages.RECEIVE_BACKOFF.delays()
        while self.wanted():
            # A task of its own, so that cancelling the reader (the server stopping) always
            # works: redis-py can lose a cancellation (taskstore.layer_outages.outcome_of).
            attempt = await layer_outages.outcome_of(self._read(), grace=layer_outages.CANCEL_GRACE)
            error = attempt.exception()
            if error is not None:  # Redis away: wait it out; what was lost is filled later
                layer_outages.report("receive", error)
                self.failed()
                await asyncio.sleep(next(pauses))
                continue
            pauses = layer_outages.RECEIVE_BACKOFF.delays()
            for position, payload in enumerate(attempt.result()):
                if position:
                    # Let the sockets write what the last message gave them: handed over all at
                    # once, a batch of large frames would count against each socket's send
                    # buffer limit (taskstore.consumers.outbox) before any went out.
                    await asyncio.sleep(0)
                self._dispatch(payload)

    async def _read(self) -> list[bytes]:
        """What waits on the key (up to READ_BATCH), or the next message to arrive (none when
        the blocking read times out)."""
        key = self.layer.prefix + self.process_name
        connection = self.layer.connection(self.layer.consistent_hash(self.process_name))
        waiting = await connection.zpopmin(key, READ_BATCH)
        if waiting:
            return [member for member, _ in waiting]
        arrived = await connection.bzpopmin(key, timeout=self.layer.brpop_timeout)
        return [] if arrived is None else [arrived[1]]

    def _dispatch(self, payload: bytes) -> None:
        try:
            message = self.layer.deserialize(payload)
            channels = message.pop("__asgi_channel__")
        except Exception:
            logger.exception("Dropping a channel-layer message that could not be read")
            return
        for channel in [channels] if isinstance(channels, str) else channels:
            self.deliver(channel, message)


def for_layer(
    layer: Any, deliver: Deliver, failed: Callable[[], None], wanted: Callable[[], bool]
) -> Reader | None:
    """A reader for ``layer`` when it is channels-redis' core layer with the internals this
    uses; None otherwise (the hub then uses ``layer.receive``)."""
    if not core_groups.supports(layer):
        return None
    if not all(hasattr(layer, name) for name in _INTERNALS):
        logger.warning("This channels-redis has no core-layer internals taskstore knows: using receive")
        return None
    return Reader(layer, deliver, failed, wanted)
