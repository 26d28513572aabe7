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
from typing import Any

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
    if not supports(layer):
        return None
    try:
        loop_layer = layer._get_layer()
        by_shard: dict[Any, list[tuple[int, str, bytes]]] = defaultdict(list)
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
    results: list[Any] = [None] * len(messages)
    for shard, items in by_shard.items():
        arguments = [part for _, channel, data in items for part in (channel, data)]
        try:
            async with shard._lock:
                shard._ensure_redis()
                await shard._redis.eval(_PUBLISH_ALL, 0, *arguments)
        except Exception as error:  # reported per message: the publisher retries those
            for index, _, _ in items:
                results[index] = error
    return results


# ARGV holds channel, message, channel, message, ...: channels are not keys (nothing is stored).
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
"""
