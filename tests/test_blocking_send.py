"""Publishing from the calling thread where no event loop runs (taskstore.blocking_send), on
channels-redis' core layer and a real Redis: what the thread cannot send goes to the sending
thread, and later batches queue behind it, so a process's messages still leave in order."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from taskstore import blocking_send, core_groups
from taskstore import publisher as publishing
from taskstore.layers import redis_host
from taskstore.publisher import Publisher
from tests.support.markers import REAL_SERVICES

pytestmark = REAL_SERVICES


class _Member:
    """A channel in a fresh group of the configured core layer."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        assert isinstance(self.layer, RedisChannelLayer)
        self.group = f"blocking-{uuid4().hex}"
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(self.group, self.channel)

    def batch(self, *numbers: int) -> list[tuple[str, dict[str, Any]]]:
        return [(self.group, {"type": "t", "n": n}) for n in numbers]

    def received(self, count: int) -> list[int]:
        async def receive() -> list[int]:
            return [(await asyncio.wait_for(self.layer.receive(self.channel), 5))["n"] for _ in range(count)]

        return async_to_sync(receive)()

    def nothing_waits(self) -> bool:
        async def count() -> int:
            connection = self.layer.connection(self.layer.consistent_hash(self.channel))
            return int(await connection.zcard(self.layer.prefix + self.layer.non_local_name(self.channel)))

        return async_to_sync(count)() == 0


@pytest.fixture
def member() -> Iterator[_Member]:
    made = _Member()
    yield made
    async_to_sync(made.layer.group_discard)(made.group, made.channel)


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    made = Publisher()
    yield made
    made.reset(timeout=5)


def test_a_thread_without_a_loop_sends_the_batch_before_publish_returns(
    member: _Member, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_expected(group: str, message: dict[str, Any]) -> None:
        raise AssertionError(f"group_send({group!r}) was called")

    monkeypatch.setattr(member.layer, "group_send", not_expected)
    publisher.publish(member.batch(1, 2, 3))
    # Already in the member's channel: nothing queued, no sending thread started.
    assert publisher._pending == 0 and publisher._thread_loop is None
    assert not member.nothing_waits()
    assert member.received(3) == [1, 2, 3]

    # A reset closes the calling thread's connections.
    assert publisher._blocking is not None
    pools = [client.connection_pool for client in publisher._blocking._clients.values()]
    assert any(c._sock is not None for pool in pools for c in pool._available_connections)
    publisher.reset(timeout=5)
    assert publisher._blocking is None
    assert all(c._sock is None for pool in pools for c in pool._available_connections)


def test_what_the_thread_cannot_send_goes_to_the_sending_thread_and_later_batches_wait_behind_it(
    member: _Member, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_send_blocking = core_groups.send_blocking

    def failing_once(layer: Any, messages: Any, connection: Any) -> list[Any] | None:
        calls.append(messages[0][1]["n"])
        if len(calls) == 1:
            return [ConnectionError("Redis away")] * len(messages)
        return real_send_blocking(layer, messages, connection)

    monkeypatch.setattr(core_groups, "send_blocking", failing_once)
    release = threading.Event()
    real_send = publishing._Sender._send

    async def held(self: Any, batch: list[Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await real_send(self, batch)

    monkeypatch.setattr(publishing._Sender, "_send", held)

    publisher.publish(member.batch(1))  # fails here: queued on the sending thread, which waits
    publisher.publish(member.batch(2))  # must not overtake it
    assert calls == [1]
    assert publisher._pending == 2 and member.nothing_waits()
    release.set()
    assert publisher.flush(timeout=10)
    assert member.received(2) == [1, 2]

    publisher.publish(member.batch(3))  # the queue is empty again: sent from here
    assert calls == [1, 3] and publisher._pending == 0
    assert member.received(1) == [3]


def test_a_batch_the_layer_cannot_serialise_is_dropped_and_logged_and_publishing_goes_on(
    member: _Member, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskstore.publisher"):
        publisher.publish([(member.group, {"type": "t", "n": object()})])  # msgpack cannot
    assert "Dropping 1 channel-layer messages" in caplog.text
    publisher.publish(member.batch(2))
    assert member.received(1) == [2]


def test_a_redis_that_is_away_fails_the_batch_without_raising() -> None:
    layer = RedisChannelLayer(hosts=[redis_host("redis://127.0.0.1:1/0")], prefix=f"t-{uuid4().hex[:8]}")
    sender = blocking_send.for_layer(layer)
    assert sender is not None
    batch = [("a", {"type": "t"}), ("b", {"type": "t"})]
    assert sender.send(batch) == batch
    sender.close()


def test_the_clients_wait_briefly_and_do_not_retry() -> None:
    client = blocking_send.blocking_client(redis_host("redis://127.0.0.1:6379/0"))
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == blocking_send.TIMEOUT_SECONDS
    assert options["socket_connect_timeout"] == blocking_send.TIMEOUT_SECONDS
    assert options["retry"].get_retries() == 0
    shorter = blocking_send.blocking_client({"address": "redis://127.0.0.1:6379/0", "socket_timeout": 0.2})
    assert shorter.connection_pool.connection_kwargs["socket_timeout"] == 0.2
    client.close()
    shorter.close()


def test_other_layers_and_sentinel_hosts_keep_the_sending_thread() -> None:
    assert blocking_send.for_layer(InMemoryChannelLayer()) is None
    sentinel = RedisChannelLayer(hosts=[{"sentinels": [("127.0.0.1", 26379)], "master_name": "m"}])
    assert blocking_send.for_layer(sentinel) is None


def test_the_pubsub_layer_is_sent_to_from_the_calling_thread_through_its_own_naming(redis_url: str) -> None:
    """The pub/sub layer's subscriber (in its event loop) receives what a thread with no loop
    sends: the layer's own group channel names and shards, made outside any loop."""
    layer = RedisPubSubChannelLayer(hosts=[redis_host(redis_url)], prefix=f"t-{uuid4().hex[:8]}")
    sender = blocking_send.for_layer(layer)
    assert sender is not None, "this channels-redis has no pub/sub internals the batch knows"
    batch = [
        ("watched", {"type": "t", "n": 1}),
        ("nobody", {"type": "t", "n": 2}),
        ("watched", {"type": "t", "n": 3}),
    ]

    async def subscribe_send_receive() -> list[int]:
        channel = await layer.new_channel()
        await layer.group_add("watched", channel)
        try:
            assert await asyncio.to_thread(sender.send, batch) == []
            return [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(2)]
        finally:
            await layer.group_discard("watched", channel)
            await layer.flush()

    assert asyncio.run(subscribe_send_receive()) == [1, 3]
    sender.close()


def test_the_layer_is_looked_at_once_not_at_every_publish(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = InMemoryChannelLayer()  # sent to from the sending thread only
    monkeypatch.setattr(publishing, "get_channel_layer", lambda: layer)
    asked: list[Any] = []
    for_layer = blocking_send.for_layer
    monkeypatch.setattr(blocking_send, "for_layer", lambda seen: asked.append(seen) or for_layer(seen))
    for n in range(3):
        publisher.publish([("g", {"type": "t", "n": n})])
    assert asked == [layer]
    assert publisher.flush(timeout=5)


def test_a_redis_that_does_not_answer_holds_the_caller_for_its_timeout_then_the_sending_thread_has_it(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    layer = RedisChannelLayer(
        hosts=[redis_host(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")], prefix=f"t-{uuid4().hex[:8]}"
    )
    monkeypatch.setattr(publishing, "get_channel_layer", lambda: layer)
    queued: list[list[Any]] = []

    async def keep(self: Any, batch: list[Any]) -> None:  # the sending thread's own retries
        queued.append(batch)

    monkeypatch.setattr(publishing._Sender, "_send", keep)
    batch = [("g", {"type": "t", "n": 1})]
    returned = threading.Event()
    caller = threading.Thread(target=lambda: (publisher.publish(batch), returned.set()), daemon=True)
    caller.start()
    try:
        assert returned.wait(blocking_send.TIMEOUT_SECONDS + 4), "publish waited on a silent Redis"
        assert publisher.flush(timeout=5)
        assert queued == [batch]
    finally:
        silent.close()
