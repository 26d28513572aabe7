"""Which groups of channels-redis' core layer have members: for a batch of messages, one round
trip (one script) per Redis host.

The core layer's ``group_send`` costs two Redis round trips and its own per-call work even when
the group is empty, and most groups a worker publishes to are: nobody watches most tasks, and
the staff feed is empty while no one has the admin open. The publisher asks this first and sends
only to the groups that have members, through the layer's own ``group_send``.

Nothing is missed by skipping an empty group: every subscriber joins its group before it reads
the task from the database (consumers, ``taskstore.wait``), so a version committed before the
join is in what it reads, and one committed after the join finds the group not empty.

This reads the layer's storage the way ``group_send`` does, through attributes of channels-redis
4's ``RedisChannelLayer`` that are not public API (``_group_key``, ``consistent_hash``,
``connection``, ``group_expiry``): channel layers deliberately offer no way to ask whether a
group has members (django/channels#1201, django/channels#2096). This module is the only one that
reads them; tests/test_core_groups.py fails if they change. Without them it declines (None) and
every message goes through ``group_send``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)


def supports(layer: Any) -> bool:
    """Whether ``layer`` is channels-redis' core layer."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(layer, RedisChannelLayer)


async def with_members(layer: Any, groups: Iterable[str]) -> set[str] | None:
    """The names among ``groups`` that have at least one member, or None when ``layer`` is not
    the core layer (or not one this understands). Redis errors are raised."""
    if not supports(layer):
        return None
    try:
        by_host: dict[int, list[str]] = defaultdict(list)
        for group in set(groups):
            by_host[layer.consistent_hash(group)].append(group)
        # Members older than group_expiry are gone, as group_send would remove them.
        expired = int(time.time()) - layer.group_expiry
        asks = [
            (names, layer.connection(index), [layer._group_key(name) for name in names])
            for index, names in by_host.items()
        ]
    except AttributeError:
        logger.warning("This channels-redis has no core-layer internals taskstore knows: using group_send")
        return None
    found: set[str] = set()
    for names, connection, keys in asks:
        counts = await connection.eval(_MEMBER_COUNTS, len(keys), *keys, expired)
        found.update(name for name, members in zip(names, counts, strict=True) if members)
    return found


# One command for a whole batch's groups on a host: what two commands per group cost in the
# client (building and parsing them) was most of the publisher's work in a worker.
_MEMBER_COUNTS = """
local counts = {}
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, 0, ARGV[1])
    counts[i] = redis.call('ZCARD', key)
end
return counts
"""
