"""A channel-layer listener on real Redis, in its own thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from channels_redis.core import RedisChannelLayer

from tests.support.processes import wait_for


class LayerListener:
    """Joins channel-layer groups and collects every message sent to them."""

    def __init__(self, redis_url: str, groups: list[str], **layer_config: Any) -> None:
        self.redis_url = redis_url
        self.groups = list(groups)
        self.layer_config = layer_config
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._task: asyncio.Future[Any] | None = None

    def __enter__(self) -> LayerListener:
        self._thread.start()
        ready = asyncio.run_coroutine_threadsafe(self._join(), self._loop).result(timeout=10)
        self._task = asyncio.run_coroutine_threadsafe(self._receive(ready), self._loop)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def leave() -> None:
            if self._task is not None:
                self._task.cancel()
            for group in self.groups:
                await self.layer.group_discard(group, self.channel)
            await self.layer.close_pools()

        asyncio.run_coroutine_threadsafe(leave(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _join(self) -> str:
        self.layer = RedisChannelLayer(hosts=[self.redis_url], **self.layer_config)
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        return self.channel

    async def _receive(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            with self._lock:
                self.messages.append(message)

    def documents(self, key: str = "task_id", value: str | None = None) -> list[dict[str, Any]]:
        """The documents received so far (optionally only those whose ``key`` is ``value``)."""
        with self._lock:
            docs = [m["document"] for m in self.messages if "document" in m]
        return [d for d in docs if value is None or d.get(key) == value]

    def wait(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate(documents)`` holds."""
        return wait_for(lambda: predicate(self.documents()), timeout, what)
