"""taskstore's WebSocket URL patterns, for a project's ``URLRouter`` (docs/install.md).

``websocket_urlpatterns`` serves ``tasks/`` and ``feed/`` under TASKSTORE_WEBSOCKET_PREFIX
(``/ws/tasks/`` and ``/ws/feed/`` by default). The admin's live list and the pages find the
feed through the same setting, so a project that routes the sockets elsewhere changes only it.
"""

from __future__ import annotations

from django.urls import URLPattern, path

from taskstore import conf
from taskstore.consumers.feed import FeedConsumer
from taskstore.consumers.tasks import TaskConsumer

__all__ = ["websocket_urlpatterns", "websocket_urls"]


def websocket_urls() -> list[URLPattern]:
    """The patterns for ``/<prefix>tasks/`` and ``/<prefix>feed/``, read from the settings now."""
    return [
        path(conf.websocket_path("tasks").lstrip("/"), TaskConsumer.as_asgi(), name="taskstore-tasks"),
        path(conf.websocket_path("feed").lstrip("/"), FeedConsumer.as_asgi(), name="taskstore-feed"),
    ]


websocket_urlpatterns = websocket_urls()
