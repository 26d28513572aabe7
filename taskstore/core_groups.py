"""Group messages for channels-redis' core layer in two round trips per batch: who is in the
batch's groups, then every member's copy, each one script per Redis host.

The core layer's ``group_send`` costs four Redis round trips per call (expire the group's old
members, read the rest, expire the channels' old messages, then a script that adds the message to
each channel), and its own per-call work, even when the group is empty; most groups a worker
publishes to are empty (nobody watches most tasks, and the staff feed is empty while no one has
the admin open). Here a batch (one transition's messages, or several transitions queued
together) costs two: one script per host that expires and reads the members of all its groups,
and one script per host that adds every copy to its channel, with the layer's capacity and
expiry rules, in the batch's order. An empty group costs nothing past the first question.

Nothing is missed by skipping an empty group: every subscriber joins its group before it reads
the task from the database (consumers, ``taskstore.wait``), so a version committed before the
join is in what it reads, and one committed after the join finds the group not empty.

The copies are the layer's own: ``_map_channel_keys_to_connection`` builds and serialises each
channel key's message exactly as ``group_send`` does. This reads the layer's storage through
attributes of channels-redis 4's ``RedisChannelLayer`` that are not public API
(``_group_key``, ``_map_channel_keys_to_connection``, ``consistent_hash``, ``connection``,
``expiry``, ``group_expiry``): channel layers offer no bulk send and no way to ask whether a group
has members (django/channels_redis#399, django/channels#1201). This module is the only one that
reads them; tests/test_core_groups.py fails if they change. Without them it declines (None) and
the publisher sends each message through ``group_send``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from taskstore import redis_exchange

logger = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]

# Copies added to one channel in one batch are a microsecond apart in score: the layer's receive
# takes the lowest score first, and equal scores would come out in the order of their random
# prefixes instead of the batch's.
_SCORE_STEP = 1e-6
_last_score = 0.0

_INTERNALS = (
    "_group_key",
    "_map_channel_keys_to_connection",
    "consistent_hash",
    "connection",
    "expiry",
    "group_expiry",
)


def supports(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis' core layer."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(layer, RedisChannelLayer)


def usable(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis' core layer with the internals this module reads."""
    if not supports(layer):
        return False
    if not all(hasattr(layer, name) for name in _INTERNALS):
        logger.warning("This channels-redis has no core-layer internals taskstore knows: using group_send")
        return False
    return True


async def send(layer: Any, messages: list[Message]) -> list[Any] | None:
    """Send ``messages`` (``(group, message)`` pairs) to their groups' members; one result per
    message (None when sent or nobody is in its group, the error when not), or None when
    ``layer`` is not the core layer (or not one this understands).

    Each group's messages reach each member in the batch's order. Like ``group_send``, a copy
    for a channel at its capacity is dropped and logged, not an error.
    """
    if not usable(layer):
        return None
    return await redis_exchange.run(
        _exchange(layer, messages),
        lambda host, script, arguments: layer.connection(host).eval(script, *arguments),
    )


def send_blocking(layer: Any, messages: list[Message], connection: Callable[[int], Any]) -> list[Any] | None:
    """:func:`send` from a thread that runs no event loop: each script goes through
    ``connection(host)``, a synchronous redis-py client of the layer's host ``host``."""
    if not usable(layer):
        return None
    return redis_exchange.run_blocking(
        _exchange(layer, messages),
        lambda host, script, arguments: connection(host).eval(script, *arguments),
    )


def _exchange(layer: Any, messages: list[Message]) -> redis_exchange.Exchange:
    """The two round trips of a batch, without I/O: yields the scripts of each round (one per
    host), is sent their outcomes (each a reply or the error), and returns one result per message.

    The members of the batch's groups first (members older than ``group_expiry`` are removed
    first, as ``group_send`` removes them); then every member's copy, in the batch's order.
    """
    by_host: dict[int, list[str]] = defaultdict(list)
    for group in {group for group, _ in messages}:
        by_host[layer.consistent_hash(group)].append(group)
    expired = int(time.time()) - layer.group_expiry
    hosts = list(by_host)
    found = yield [
        (host, _READ_MEMBERS, [len(by_host[host]), *(layer._group_key(n) for n in by_host[host]), expired])
        for host in hosts
    ]
    error = next((outcome for outcome in found if isinstance(outcome, Exception)), None)
    if error is not None:  # Redis away: the publisher retries the whole batch
        return [error] * len(messages)
    members: dict[str, list[str]] = {}
    for host, channels_by_group in zip(hosts, found, strict=True):
        for name, channels in zip(by_host[host], channels_by_group, strict=True):
            if channels:
                members[name] = [c.decode() if isinstance(c, bytes) else c for c in channels]
    # Per host, in the batch's order: (group, channel key, serialised copy, capacity), and which
    # messages have copies there.
    copies: dict[int, list[tuple[str, bytes | str, bytes, int]]] = defaultdict(list)
    senders: dict[int, set[int]] = defaultdict(set)
    for index, (group, message) in enumerate(messages):
        channels = members.get(group)
        if not channels:
            continue
        by_host_keys, payloads, capacities = layer._map_channel_keys_to_connection(channels, message)
        for host, keys in by_host_keys.items():
            copies[host].extend((group, key, payloads[key], capacities[key]) for key in keys)
            senders[host].add(index)
    results: list[Any] = [None] * len(messages)
    if not copies:
        return results
    hosts = list(copies)
    outcomes = yield [(host, _ADD_COPIES, _copies_arguments(layer, copies[host])) for host in hosts]
    for host, outcome in zip(hosts, outcomes, strict=True):
        if isinstance(outcome, Exception):
            # Reported per message: the publisher retries those (a member on a host whose copies
            # did go out may then get a message twice; streams drop a version they have).
            for index in senders[host]:
                results[index] = outcome
        else:
            _log_dropped(copies[host], outcome)
    return results


def _copies_arguments(layer: Any, items: list[tuple[str, bytes | str, bytes, int]]) -> list[Any]:
    """EVAL's arguments for adding each copy (group, channel key, payload, capacity) to its
    channel in one script, in order."""
    now = time.time()
    arguments: list[Any] = []
    for _, _, payload, capacity in items:
        arguments += [payload, capacity, _next_score(now)]
    return [
        len(items),
        *(key for _, key, _, _ in items),
        *arguments,
        int(now) - int(layer.expiry),
        int(layer.expiry),
    ]


def _log_dropped(items: list[tuple[str, bytes | str, bytes, int]], dropped: list[int]) -> None:
    """Log the copies dropped at capacity (their 1-based positions), per group, as ``group_send``
    does."""
    by_group: dict[str, int] = defaultdict(int)
    for position in dropped:
        by_group[items[position - 1][0]] += 1
    for group, count in by_group.items():
        copies = sum(1 for item in items if item[0] == group)
        logger.info("%s of %s channels over capacity in group %s", count, copies, group)


def _next_score(now: float) -> float:
    """A score after every one this process has given (the batch's order, and the last batch's)."""
    global _last_score
    _last_score = max(now, _last_score + _SCORE_STEP)
    return _last_score


# KEYS: the groups' keys; ARGV[1]: the time before which a membership has expired.
_READ_MEMBERS = """
local members = {}
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, 0, ARGV[1])
    members[i] = redis.call('ZRANGE', key, 0, -1)
end
return members
"""

# KEYS: a channel key per copy (a key may repeat); ARGV: payload, capacity and score per copy,
# then the time before which a waiting message has expired, then the channels' expiry in seconds.
# What group_send does per channel: expire old messages, add the copy unless the channel is at
# its capacity, renew the channel's expiry. Returns the positions of the copies dropped.
_ADD_COPIES = """
local expired = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
local cleaned = {}
local dropped = {}
for i, key in ipairs(KEYS) do
    if not cleaned[key] then
        redis.call('ZREMRANGEBYSCORE', key, 0, expired)
        cleaned[key] = true
    end
    local at = 3 * (i - 1)
    if redis.call('ZCARD', key) < tonumber(ARGV[at + 2]) then
        redis.call('ZADD', key, ARGV[at + 3], ARGV[at + 1])
        redis.call('EXPIRE', key, expiry)
    else
        dropped[#dropped + 1] = i
    end
end
return dropped
"""
