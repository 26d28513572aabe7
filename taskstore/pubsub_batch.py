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
from collections.abc import Callable, Generator
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
    started = _started(lambda: layer._get_layer(), layer, messages)
    if started is None:
        return None
    exchange, scripts = started
    outcomes: list[Any] = []
    for shard, arguments in scripts:
        try:
            async with shard._lock:
                shard._ensure_redis()
                outcomes.append(await shard._redis.eval(_PUBLISH_ALL, 0, *arguments))
        except Exception as error:
            outcomes.append(error)
    return _results(exchange, outcomes)


def send_blocking(
    layer: Any, naming: Any, messages: list[Message], connection: Callable[[Any], Any]
) -> list[Any] | None:
    """:func:`send` from a thread that runs no event loop: ``naming`` is a loop layer of ``layer``
    made outside any loop (:func:`naming_layer`), used only for its channel names and shards;
    each shard's script goes through ``connection(shard)``, a synchronous redis-py client."""
    started = _started(lambda: naming, layer, messages)
    if started is None:
        return None
    exchange, scripts = started
    outcomes: list[Any] = []
    for shard, arguments in scripts:
        try:
            outcomes.append(connection(shard).eval(_PUBLISH_ALL, 0, *arguments))
        except Exception as error:
            outcomes.append(error)
    return _results(exchange, outcomes)


def naming_layer(layer: Any) -> Any | None:
    """A loop layer of the pub/sub ``layer`` made outside any event loop, for its channel naming
    and its shards' hosts (it opens no connection until asked to), or None if this channels-redis
    makes them otherwise."""
    try:
        from channels_redis.pubsub import RedisPubSubLoopLayer

        return RedisPubSubLoopLayer(*layer._args, **layer._kwargs, channel_layer=layer)
    except (ImportError, AttributeError, TypeError):
        return None


Exchange = Generator[list[tuple[Any, list[Any]]], list[Any], list[Any]]


def _started(naming: Callable[[], Any], layer: Any, messages: list[Message]) -> tuple[Exchange, Any] | None:
    """The batch's exchange and its scripts, with the loop layer ``naming()`` gives; None when
    ``layer`` is not the pub/sub layer or not one whose internals this knows."""
    if not supports(layer):
        return None
    try:
        exchange = _exchange(naming(), layer, messages)
        return exchange, next(exchange)
    except AttributeError:
        logger.warning("This channels-redis has no pub/sub internals the batch knows: using group_send")
        return None


def _exchange(loop_layer: Any, layer: Any, messages: list[Message]) -> Exchange:
    """A batch's one round trip, without I/O: yields each shard's script arguments (channel,
    message, channel, message, ...: the layer's own group channel names, each message serialised
    once), is sent their outcomes (each a reply or the error), and returns one result per message."""
    by_shard: dict[Any, list[tuple[int, str, bytes]]] = defaultdict(list)
    encoded: dict[int, bytes] = {}
    for index, (group, message) in enumerate(messages):
        channel = loop_layer._get_group_channel_name(group)
        data = encoded.get(id(message))
        if data is None:
            data = encoded[id(message)] = layer.serialize(message)
        by_shard[loop_layer._get_shard(channel)].append((index, channel, data))
    shards = list(by_shard)
    outcomes = yield [
        (shard, [part for _, channel, data in by_shard[shard] for part in (channel, data)])
        for shard in shards
    ]
    results: list[Any] = [None] * len(messages)
    for shard, outcome in zip(shards, outcomes, strict=True):
        if isinstance(outcome, Exception):  # reported per message: the publisher retries those
            for index, _, _ in by_shard[shard]:
                results[index] = outcome
    return results


def _results(exchange: Exchange, outcomes: list[Any]) -> list[Any]:
    try:
        exchange.send(outcomes)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("the pub/sub exchange has one round trip")


# ARGV holds channel, message, channel, message, ...: channels are not keys (nothing is stored).
_PUBLISH_ALL = """
for i = 1, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
"""
