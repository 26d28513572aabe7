"""Group messages for channels-redis' pub/sub layer in one round trip: one script per Redis host.

``RedisPubSubChannelLayer.group_send`` is one ``PUBLISH``, awaited on its own under a lock per
Redis host: a transition's two or three messages (the task's group, the staff feed, the owner's
feed) are as many round trips, and each is serialised again. Here the messages of a batch (one
transition, or several queued together) are serialised once per message and published by one
script per host: one command and one reply, where a pipeline of ``PUBLISH``es had the client
build and parse one each (redis-py's asyncio client parses each reply under its own timeout,
most of the publisher's time with this layer).

It uses the layer's own naming and serialisation, reached through attributes of channels-redis 4
that are not public API (``_get_layer``, ``_get_group_channel_name``, ``_get_shard``, a shard's
``_lock``, ``_ensure_redis`` and ``_redis``): channel layers have no bulk send
(django/channels_redis#399, open). This module is the only one that reads them, and
tests/test_library_internals.py fails if a release changes them; for any other layer (or if
those are missing) it declines and the publisher falls back to ``group_send``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from taskstore import redis_exchange

logger = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]


def supports(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis' pub/sub layer."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:
        return False
    return isinstance(layer, RedisPubSubChannelLayer)


async def send(layer: Any, messages: list[Message]) -> list[Any] | None:
    """PUBLISH ``messages`` in one script per Redis host; one result per message (None when
    sent, the error when not), or None when ``layer`` is not the pub/sub layer."""
    planned = _planned(lambda: layer._get_layer(), layer, messages)
    if planned is None:
        return None

    async def publish(shard: Any, script: str, arguments: list[Any]) -> Any:
        async with shard._lock:
            shard._ensure_redis()
            return await shard._redis.eval(script, *arguments)

    return await redis_exchange.run(_exchange(planned, len(messages)), publish)


def send_blocking(
    layer: Any, naming: Any, messages: list[Message], connection: Callable[[Any], Any]
) -> list[Any] | None:
    """:func:`send` from a thread that runs no event loop: ``naming`` is a loop layer of ``layer``
    made outside any loop (:func:`naming_layer`), used only for its channel names and shards;
    each shard's script goes through ``connection(shard)``, a synchronous redis-py client."""
    planned = _planned(lambda: naming, layer, messages)
    if planned is None:
        return None
    return redis_exchange.run_blocking(
        _exchange(planned, len(messages)),
        lambda shard, script, arguments: connection(shard).eval(script, *arguments),
    )


def naming_layer(layer: Any) -> Any | None:
    """A loop layer of the pub/sub ``layer`` made outside any event loop, for its channel naming
    and its shards' hosts (it opens no connection until asked to), or None if this channels-redis
    makes them otherwise."""
    try:
        from channels_redis.pubsub import RedisPubSubLoopLayer

        return RedisPubSubLoopLayer(*layer._args, **layer._kwargs, channel_layer=layer)
    except (ImportError, AttributeError, TypeError):
        return None


# Per shard, in the batch's order: (message's index, group channel, serialised message).
Planned = dict[Any, list[tuple[int, str, bytes]]]


def _planned(naming: Callable[[], Any], layer: Any, messages: list[Message]) -> Planned | None:
    """The batch per shard, named by the loop layer ``naming()`` gives (each message serialised
    once); None when ``layer`` is not the pub/sub layer or not one whose internals this knows."""
    if not supports(layer):
        return None
    try:
        loop_layer = naming()
        by_shard: Planned = defaultdict(list)
        encoded: dict[int, bytes] = {}
        for index, (group, message) in enumerate(messages):
            channel = loop_layer._get_group_channel_name(group)
            data = encoded.get(id(message))
            if data is None:
                data = encoded[id(message)] = layer.serialize(message)
            by_shard[loop_layer._get_shard(channel)].append((index, channel, data))
    except AttributeError:
        logger.warning("This channels-redis has no pub/sub internals the batch knows: using group_send")
        return None
    return by_shard


def _exchange(planned: Planned, count: int) -> redis_exchange.Exchange:
    """The batch's one round trip (taskstore.redis_exchange): one script per shard, then one
    result per message."""
    shards = list(planned)
    outcomes = yield [
        (shard, _PUBLISH_ALL, [0, *(part for _, channel, data in planned[shard] for part in (channel, data))])
        for shard in shards
    ]
    results: list[Any] = [None] * count
    for shard, outcome in zip(shards, outcomes, strict=True):
        if isinstance(outcome, Exception):  # reported per message: the publisher retries those
            for index, _, _ in planned[shard]:
                results[index] = outcome
    return results


# ARGV holds channel, message, channel, message, ...: channels are not keys (nothing is stored).
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
"""
