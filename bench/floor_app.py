"""The floor of ``bench/fanout.py``: what the ASGI server itself costs for fan-out.

A bare ASGI application (no Channels, no Django, no database) that subscribes once to one Redis
pub/sub channel and writes each message, encoded once, to every open WebSocket:

    daphne bench.floor_app:application        (FLOOR_REDIS_URL, FLOOR_CHANNEL in the environment)

Whatever taskstore adds on top of this, with the same server, client and machine, is ours.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio as aioredis

CHANNEL = os.environ.get("FLOOR_CHANNEL", "bench.fanout.floor")
REDIS_URL = os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/4")

_sockets: set[Any] = set()
_listener: asyncio.Task[None] | None = None


async def _listen() -> None:
    connection = aioredis.Redis.from_url(REDIS_URL)
    pubsub = connection.pubsub()
    await pubsub.subscribe(CHANNEL)
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        event = {"type": "websocket.send", "text": message["data"].decode()}  # encoded once
        for send in list(_sockets):
            await send(event)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept every socket, keep it until it closes; one Redis subscription for all of them."""
    global _listener
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        return
    if scope["type"] != "websocket":
        return
    if _listener is None:
        _listener = asyncio.get_running_loop().create_task(_listen())
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            _sockets.add(send)
        elif message["type"] == "websocket.disconnect":
            _sockets.discard(send)
            return
