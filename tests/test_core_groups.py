"""Publishing through channels-redis' core layer sends only to groups that have members, and
the members still get every message (real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from taskstore import core_groups
from taskstore.publisher import publisher
from tests.support.markers import REAL_SERVICES

pytestmark = REAL_SERVICES


def _layer(redis_url: str) -> RedisChannelLayer:
    from taskstore.layers import redis_host

    return RedisChannelLayer(hosts=[redis_host(redis_url)], prefix=f"test-{uuid4().hex[:8]}")


async def test_only_groups_with_members_are_named(redis_url: str) -> None:
    layer = _layer(redis_url)
    channel = await layer.new_channel()
    await layer.group_add("watched", channel)
    # This channels-redis is one core_groups understands (None would mean it fell back).
    assert await core_groups.with_members(layer, ["watched", "nobody", "watched"]) == {"watched"}
    await layer.group_discard("watched", channel)
    assert await core_groups.with_members(layer, ["watched"]) == set()
    await layer.flush()
    await layer.close_pools()


async def test_members_past_the_group_expiry_do_not_count(redis_url: str) -> None:
    layer = _layer(redis_url)
    # A member that joined long ago and never renewed, as group_send would expire it.
    connection = layer.connection(layer.consistent_hash("stale"))
    await connection.zadd(layer._group_key("stale"), {"specific.gone!x": 1})
    assert await core_groups.with_members(layer, ["stale"]) == set()
    assert await connection.zcard(layer._group_key("stale")) == 0
    await layer.flush()
    await layer.close_pools()


def test_other_layers_are_declined() -> None:
    from channels.layers import InMemoryChannelLayer

    assert async_to_sync(core_groups.with_members)(InMemoryChannelLayer(), ["g"]) is None


def test_the_publisher_skips_empty_groups_and_delivers_to_members(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    watched, empty = f"w-{uuid4().hex}", f"e-{uuid4().hex}"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(watched, channel)
    sent: list[str] = []
    group_send = layer.group_send

    async def counting(group: str, message: dict[str, Any]) -> None:
        sent.append(group)
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    message = {"type": "test.message", "n": 1}
    publisher.publish([(empty, message), (watched, message), (empty, {**message, "n": 2})])
    assert publisher.flush(timeout=10)
    assert sent == [watched]

    async def receive() -> dict[str, Any]:
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    assert async_to_sync(receive)() == message
    async_to_sync(layer.group_discard)(watched, channel)
