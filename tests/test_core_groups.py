"""Publishing through channels-redis' core layer: a batch goes out in two scripts per Redis host,
and what the members receive is what ``group_send`` would have given them (real Redis).

These tests read the layer the way taskstore.core_groups does; they fail if a channels-redis
release changes the internals it uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from taskstore import core_groups
from taskstore.publisher import publisher
from tests import services
from tests.support.markers import REAL_SERVICES

pytestmark = REAL_SERVICES

# A second Redis "host" for the sharded case: another database of the test server (the layers'
# random prefixes keep parallel runs apart).
SECOND_HOST = services.REDIS_URL.rsplit("/", 1)[0] + "/11"


def _layer(*urls: str, **options: Any) -> RedisChannelLayer:
    from taskstore.layers import redis_host

    return RedisChannelLayer(
        hosts=[redis_host(url) for url in urls], prefix=f"test-{uuid4().hex[:8]}", **options
    )


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    made = _layer(redis_url)
    yield made
    await made.flush()
    await made.close_pools()


async def _received(layer: RedisChannelLayer, channel: str, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]


async def _nothing_waits(layer: RedisChannelLayer, channel: str) -> bool:
    connection = layer.connection(layer.consistent_hash(channel))
    return await connection.zcard(layer.prefix + layer.non_local_name(channel)) == 0


async def test_members_get_their_groups_messages_in_the_batchs_order(layer: RedisChannelLayer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("task", first)
    await layer.group_add("task", second)
    await layer.group_add("feed", second)
    batch = [("task", {"type": "t", "n": n}) for n in range(1, 6)]
    batch.insert(2, ("feed", {"type": "f", "n": 0}))
    batch.append(("nobody", {"type": "x", "n": 9}))
    # This channels-redis is one core_groups understands (None would mean it fell back).
    assert await core_groups.send(layer, batch) == [None] * len(batch)
    assert [m["n"] for m in await _received(layer, first, 5)] == [1, 2, 3, 4, 5]
    both = [(m["type"], m["n"]) for m in await _received(layer, second, 6)]
    assert both == [("t", 1), ("t", 2), ("f", 0), ("t", 3), ("t", 4), ("t", 5)]
    assert await _nothing_waits(layer, first) and await _nothing_waits(layer, second)


async def test_batches_one_after_another_keep_their_order(layer: RedisChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("task", channel)
    for n in range(50):  # far quicker than the clock moves between some of them
        assert await core_groups.send(layer, [("task", {"type": "t", "n": n})]) == [None]
    assert [m["n"] for m in await _received(layer, channel, 50)] == list(range(50))


async def test_an_empty_group_stores_nothing(layer: RedisChannelLayer) -> None:
    assert await core_groups.send(layer, [("nobody", {"type": "t"})]) == [None]
    connection = layer.connection(0)
    assert await connection.keys(f"{layer.prefix}*") == []


async def test_members_past_the_group_expiry_get_nothing_and_are_removed(layer: RedisChannelLayer) -> None:
    # A member that joined long ago and never renewed, as group_send would expire it.
    connection = layer.connection(layer.consistent_hash("stale"))
    stale = await layer.new_channel()
    await connection.zadd(layer._group_key("stale"), {stale: 1})
    assert await core_groups.send(layer, [("stale", {"type": "t"})]) == [None]
    assert await connection.zcard(layer._group_key("stale")) == 0
    assert await _nothing_waits(layer, stale)


async def test_a_full_channel_drops_the_copy_and_the_others_still_get_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = _layer(redis_url, capacity=2)
    full = await layer.new_channel()
    # Channels of one process share a Redis key: a second layer (another process) for the other.
    other = _layer(redis_url, capacity=2)
    other.prefix = layer.prefix
    free = await other.new_channel()
    await layer.group_add("task", full)
    await layer.group_add("task", free)
    await layer.send(full, {"type": "waiting", "n": 1})
    await layer.send(full, {"type": "waiting", "n": 2})
    with caplog.at_level(logging.INFO, logger="taskstore.core_groups"):
        assert await core_groups.send(layer, [("task", {"type": "t", "n": 3})]) == [None]
    assert "1 of 2 channels over capacity in group task" in caplog.text
    assert [m["n"] for m in await _received(layer, full, 2)] == [1, 2]
    assert [m["n"] for m in await _received(other, free, 1)] == [3]
    await layer.flush()
    await layer.close_pools()
    await other.close_pools()


async def test_with_two_hosts_each_member_gets_its_copy_on_its_own_host(redis_url: str) -> None:
    layer = _layer(redis_url, SECOND_HOST)
    # Processes' layers, each with a channel in the group, until both hosts have one.
    receivers: list[RedisChannelLayer] = []
    channels: list[str] = []
    while {layer.consistent_hash(layer.non_local_name(c)) for c in channels} != {0, 1}:
        assert len(channels) < 64, "every process channel hashed to one host"
        receivers.append(_layer(redis_url, SECOND_HOST))
        receivers[-1].prefix = layer.prefix
        channels.append(await receivers[-1].new_channel())
        await layer.group_add("task", channels[-1])
    assert await core_groups.send(layer, [("task", {"type": "t", "n": n}) for n in (1, 2)]) == [None, None]
    for receiver, channel in zip(receivers, channels, strict=True):
        assert [m["n"] for m in await _received(receiver, channel, 2)] == [1, 2]
        await receiver.close_pools()
    await layer.flush()
    await layer.close_pools()


async def test_redis_away_is_an_error_for_every_message_of_the_batch() -> None:
    layer = _layer("redis://127.0.0.1:1/0")  # nothing listens there
    results = await core_groups.send(layer, [("a", {"type": "t"}), ("b", {"type": "t"})])
    assert results is not None and len(results) == 2
    assert all(isinstance(r, Exception) for r in results)
    await layer.close_pools()


def test_other_layers_are_declined() -> None:
    from channels.layers import InMemoryChannelLayer

    assert async_to_sync(core_groups.send)(InMemoryChannelLayer(), [("g", {"type": "t"})]) is None


def test_the_publisher_sends_a_batch_without_group_send(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    watched, empty = f"w-{uuid4().hex}", f"e-{uuid4().hex}"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(watched, channel)

    async def not_expected(group: str, message: dict[str, Any]) -> None:
        raise AssertionError(f"group_send({group!r}) was called")

    monkeypatch.setattr(layer, "group_send", not_expected)
    publisher.publish(
        [(empty, {"type": "t", "n": 1}), (watched, {"type": "t", "n": 2}), (watched, {"type": "t", "n": 3})]
    )
    assert publisher.flush(timeout=10)

    async def receive() -> list[int]:
        return [m["n"] for m in await _received(layer, channel, 2)]

    assert async_to_sync(receive)() == [2, 3]
    async_to_sync(layer.group_discard)(watched, channel)


# --- the hub's reader (taskstore.core_reader) ----------------------------------------------------


class _Collector:
    """A hub member that keeps what it is offered, and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def until(self, count: int) -> list[int]:
        async def arrived() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(arrived(), 5)
        return [m["n"] for m in self.messages]


async def _stopped(hub: Any) -> None:
    """Cancel the hub's reader, as a stopping server does; it must end within seconds even while
    it waits in a blocking read (redis-py can lose a cancellation)."""
    assert hub.reader is not None and hub.reader.task is not None
    await asyncio.sleep(0.3)  # into the blocking read
    hub.reader.task.cancel()
    done, _ = await asyncio.wait({hub.reader.task}, timeout=3)
    assert done, "the reader did not end when cancelled"


async def test_a_hub_on_the_core_layer_reads_all_its_groups_from_one_key(layer: RedisChannelLayer) -> None:
    from taskstore.fanout import Hub

    hub = Hub(layer)
    assert hub.reader is not None, "this channels-redis is not one core_reader understands"
    first, second = _Collector(), _Collector()
    await hub.join("a", first)
    await hub.join("b", second)
    batch = [("a", {"type": "t", "n": 1}), ("b", {"type": "t", "n": 2}), ("a", {"type": "t", "n": 3})]
    assert await core_groups.send(layer, batch) == [None] * 3
    await layer.group_send("b", {"type": "t", "n": 4})  # channels-redis' own send reaches it too
    assert await first.until(2) == [1, 3]
    assert await second.until(2) == [2, 4]
    channels = {entry.channel for entry in hub.groups.values()}
    keys = {layer.prefix + layer.non_local_name(channel) for channel in channels if channel}
    assert len(channels) == 2 and len(keys) == 1
    await _stopped(hub)


async def test_a_group_the_hub_left_gets_nothing_and_the_others_go_on(layer: RedisChannelLayer) -> None:
    from taskstore.fanout import Hub

    hub = Hub(layer)
    left, staying = _Collector(), _Collector()
    await hub.join("a", left)
    await hub.join("b", staying)
    channel = hub.groups["a"].channel
    assert channel is not None
    await hub.leave("a", left)
    # A message already on its way to the channel the hub left, then one for the group it kept.
    await layer.send(channel, {"type": "t", "n": 1})
    await layer.group_send("b", {"type": "t", "n": 2})
    assert await staying.until(1) == [2]
    assert left.messages == []
    await _stopped(hub)


async def test_a_failed_read_counts_against_every_group_and_the_reader_recovers(
    layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from taskstore.fanout import Hub

    layer.brpop_timeout = 0.2  # the blocking read comes back soon when idle
    hub = Hub(layer)
    first, second = _Collector(), _Collector()
    await hub.join("a", first)
    await hub.join("b", second)
    connection = layer.connection
    down = True

    def failing(index: int) -> Any:
        if down:
            raise ConnectionError("Redis is away")
        return connection(index)

    before = time.monotonic()
    monkeypatch.setattr(layer, "connection", failing)

    async def failed() -> None:
        while not (hub.failed_since("a", before) and hub.failed_since("b", before)):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(failed(), 5)
    down = False
    await layer.group_send("b", {"type": "t", "n": 1})
    assert await second.until(1) == [1]
    await _stopped(hub)


async def test_a_hub_everyone_left_stops_reading_and_reads_again_on_the_next_join(
    layer: RedisChannelLayer,
) -> None:
    """An idle server holds no blocking read on Redis: the reader ends after its current read
    once the hub has no channels, and the next join starts it again."""
    from taskstore.fanout import Hub

    layer.brpop_timeout = 0.2  # the blocking read comes back soon when idle
    hub = Hub(layer)
    member = _Collector()
    await hub.join("a", member)
    assert hub.reader is not None and hub.reader.task is not None
    first_reader = hub.reader.task
    await hub.leave("a", member)
    done, _ = await asyncio.wait({first_reader}, timeout=3)
    assert done, "the reader went on reading with no channel left"
    assert first_reader.exception() is None
    await hub.join("a", member)
    assert hub.reader.task is not first_reader and not hub.reader.task.done()
    await layer.group_send("a", {"type": "t", "n": 1})
    assert await member.until(1) == [1]
    await _stopped(hub)
