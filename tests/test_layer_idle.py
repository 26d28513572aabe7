"""An idle consumer's blocking read on Redis must not time out and drop its socket."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_an_idle_channel_read_outlives_the_redis_client_timeout(redis_url: str) -> None:
    from channels_redis.core import RedisChannelLayer

    # A layer of the test's own: close_pools() closes every pool of the layer, and the process's
    # shared one also holds pools of other event loops (the publisher's), which it cannot close
    # from this one.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    assert isinstance(layer, RedisChannelLayer)
    channel = await layer.new_channel()
    # Longer than redis-py 8's default 5 s read timeout and channels-redis' 5 s blocking read:
    # only asyncio's own deadline may end this wait.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), timeout=7)
    await layer.send(channel, {"type": "still.here"})
    assert await asyncio.wait_for(layer.receive(channel), timeout=5) == {"type": "still.here"}
    await layer.close_pools()
