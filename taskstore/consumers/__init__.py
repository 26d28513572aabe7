"""taskstore's WebSocket consumers: ``TaskConsumer`` (task and group subscriptions) and
``FeedConsumer`` (every transition a user may see). Route them with :mod:`taskstore.routing`."""

from __future__ import annotations

from typing import Any

__all__ = ["FeedConsumer", "TaskConsumer"]


def __getattr__(name: str) -> Any:
    # Lazy: the consumers import models, and ``taskstore.consumers.codes`` must be importable
    # (by settings, by clients' code) before Django's apps are ready.
    if name == "TaskConsumer":
        from taskstore.consumers.tasks import TaskConsumer

        return TaskConsumer
    if name == "FeedConsumer":
        from taskstore.consumers.feed import FeedConsumer

        return FeedConsumer
    raise AttributeError(name)
