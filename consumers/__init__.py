"""The example project's WebSocket consumers: taskstore's own, as docs/install.md sets them up.

A project that wants to change how its sockets behave subclasses them here; this one uses them
as they come.
"""

from taskstore.consumers import FeedConsumer, TaskConsumer

__all__ = ["FeedConsumer", "TaskConsumer"]
