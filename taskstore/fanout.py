"""Fan-out per server process: one channel-layer membership per group, local delivery to sockets.

A channel-layer group with a thousand sockets in it costs a thousand memberships in Redis and a
thousand receives, deserialisations and dispatches per message. Here a server process joins each
group it serves once, with a channel of its own, however many of its sockets follow that group,
and hands every message it receives to those sockets itself (Phoenix PubSub and Centrifugo work
the same way: the broker fans out to nodes, each node to its connections).

The promise is unchanged: the layer remains at-most-once and unordered across processes, and each
socket still drops what it already sent and fills gaps from the database
(taskstore.consumers.delivery). A membership the layer lost (a Redis restart, ``group_expiry``) is
made again by the hub's periodic refresh, every TASKSTORE_RECONCILE_INTERVAL seconds.

On channels-redis' core layer one reader serves all of a hub's channels (taskstore.core_reader);
on any other layer each membership has a receive of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any, Protocol

from taskstore import conf, core_reader, layer_outages

logger = logging.getLogger(__name__)

# The message a hub sends its own channel to end that channel's receive.
STOP = "taskstore.hub.stop"


class Member(Protocol):
    """What the hub delivers to: a socket's consumer."""

    def offer(self, message: dict[str, Any]) -> None:
        """Take a message of a group the member joined; must not block (it runs in the hub's loop)."""


class _Membership:
    """One group this process serves: its local members and its one layer channel."""

    __slots__ = ("channel", "failed_at", "group", "joined", "lock", "members", "receiver")

    def __init__(self, group: str) -> None:
        self.group = group
        # A dict as an ordered set: members get messages in the order they joined.
        self.members: dict[Member, None] = {}
        self.channel: str | None = None
        self.receiver: asyncio.Task[None] | None = None
        self.joined = False
        self.lock = asyncio.Lock()
        # When a layer call for this group last failed (time.monotonic()): messages of the group
        # may have been lost since.
        self.failed_at = float("-inf")

    def failed(self) -> None:
        """Note that a layer call for this group failed just now."""
        self.failed_at = time.monotonic()


class Hub:
    """The groups one event loop of one process serves on one channel layer."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.groups: dict[str, _Membership] = {}
        self.refresher: asyncio.Task[None] | None = None
        # Observable: messages received from the layer, and deliveries made from them.
        self.received = 0
        self.delivered = 0
        # On channels-redis' core layer one reader serves all the hub's channels
        # (taskstore.core_reader); on any other layer each channel has its own receive.
        self.by_channel: dict[str, _Membership] = {}
        self.reader = core_reader.for_layer(
            layer, self._delivered_to, self._all_failed, wanted=lambda: bool(self.by_channel)
        )

    async def join(self, group: str, member: Member) -> None:
        """Make ``member`` receive the messages of ``group``.

        Returns once this process is in the group on the layer (so a transition committed after
        the caller's next database read is sure to arrive), or the layer failed, in which case
        the periodic refresh joins again later.
        """
        entry = self.groups.get(group)
        if entry is None:
            entry = self.groups[group] = _Membership(group)
        entry.members[member] = None
        async with entry.lock:
            if not entry.joined and self.groups.get(group) is entry:
                await self._attach(entry)
        self._ensure_refresher()

    async def leave(self, group: str, member: Member) -> None:
        """Stop delivering ``group`` to ``member``; the process leaves the group with its last member."""
        entry = self.groups.get(group)
        if entry is None or member not in entry.members:
            return
        del entry.members[member]
        if not entry.members:
            await self._detach(entry)

    def failed_since(self, group: str, moment: float) -> bool:
        """Whether a layer call for ``group`` (joining it, creating or reading its channel)
        failed after ``moment`` (``time.monotonic()``), so that its members may have missed
        messages. Failures of other groups do not count."""
        entry = self.groups.get(group)
        return entry is not None and entry.failed_at > moment

    def members(self, group: str) -> int:
        """How many local members ``group`` has."""
        entry = self.groups.get(group)
        return len(entry.members) if entry is not None else 0

    async def _attach(self, entry: _Membership) -> None:
        if self.reader is not None:
            if entry.channel is None:
                entry.channel = self.reader.new_channel()
                self.by_channel[entry.channel] = entry
            self.reader.ensure_running()  # after the hub was idle, or a reader that ended
        if entry.channel is None:
            attempt = await layer_outages.outcome_of(self.layer.new_channel())
            error = attempt.exception()
            if error is not None:
                layer_outages.report("new channel", error)
                entry.failed()
                return
            entry.channel = attempt.result()
            entry.receiver = asyncio.create_task(self._receive(entry))
        failed = await layer_outages.one_at_a_time([self.layer.group_add(entry.group, entry.channel)], "join")
        entry.joined = failed == 0
        if failed:
            entry.failed()
        if self.groups.get(entry.group) is not entry:
            # Everyone left while the join was in flight.
            await self._detach(entry)

    async def _detach(self, entry: _Membership) -> None:
        if self.groups.get(entry.group) is entry:
            del self.groups[entry.group]
        if entry.channel is not None:
            self.by_channel.pop(entry.channel, None)
        if entry.channel is not None and entry.joined:
            entry.joined = False
            # A failed discard costs little: memberships expire on their own (group_expiry).
            await layer_outages.one_at_a_time([self.layer.group_discard(entry.group, entry.channel)], "leave")
        if entry.receiver is not None and entry.channel is not None:
            # (A hub with a reader of its own has no receive per channel: nothing to end.)
            # End the receive with a message rather than a cancellation: channels-redis' core
            # layer, read through its receive, serves every channel of a process from one
            # blocking read, and a receive cancelled in it can hold that read up to its 5 s
            # timeout, delaying every other group's messages (measured: a 5.1 s frame in
            # bench/push_latency.py, where finished tasks leave their groups while others stream).
            failed = await layer_outages.one_at_a_time(
                [self.layer.send(entry.channel, {"type": STOP})], "stop"
            )
            if failed:
                entry.receiver.cancel()
        elif entry.receiver is not None:
            entry.receiver.cancel()

    async def _receive(self, entry: _Membership) -> None:
        assert entry.channel is not None
        receive = layer_outages.tolerant(functools.partial(self.layer.receive, entry.channel), entry.failed)
        while True:
            message = await receive()
            if message.get("type") == STOP:
                return
            self._deliver(entry, message)

    def _delivered_to(self, channel: str, message: dict[str, Any]) -> None:
        # From the core layer's reader: a channel the hub has left gets nothing.
        entry = self.by_channel.get(channel)
        if entry is not None:
            self._deliver(entry, message)

    def _deliver(self, entry: _Membership, message: dict[str, Any]) -> None:
        self.received += 1
        # Members are called in turn without awaiting: none of them can hold up the others.
        for member in list(entry.members):
            try:
                member.offer(message)
            except Exception:
                logger.exception("Delivering a %r message failed", message.get("type"))
            self.delivered += 1

    def _all_failed(self) -> None:
        # The reader serves every group: a failed read may have lost any group's messages.
        for entry in self.groups.values():
            entry.failed()

    def _ensure_refresher(self) -> None:
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        # Redis keeps memberships: a restart loses them and group_expiry ends them. Adding
        # again is idempotent, one call per group this process serves, one at a time.
        # Spread over the interval, not all at once: hundreds of calls in a row hold up the
        # connection the process receives on.
        while True:
            interval = conf.reconcile_interval()
            if interval <= 0:
                return
            entries = list(self.groups.values())
            if not entries:
                await asyncio.sleep(interval)
                continue
            pause = interval / len(entries)
            for entry in entries:
                await asyncio.sleep(pause)
                if self.groups.get(entry.group) is not entry or entry.lock.locked():
                    continue
                async with entry.lock:
                    await self._attach(entry)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Hub]] = weakref.WeakKeyDictionary()


def hub_for(layer: Any) -> Hub:
    """The hub of ``layer`` on the running event loop (one per loop and layer object)."""
    loop = asyncio.get_running_loop()
    hubs = _hubs.setdefault(loop, {})
    hub = hubs.get(id(layer))
    if hub is None or hub.layer is not layer:
        hub = hubs[id(layer)] = Hub(layer)
    return hub
