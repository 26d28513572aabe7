"""The example project's WebSocket URL patterns, written as docs/install.md shows for a project
with consumers of its own (``consumers/``). The paths match TASKSTORE_WEBSOCKET_PREFIX ("ws/")."""

from django.urls import path

from consumers import FeedConsumer, TaskConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskConsumer.as_asgi()),
    path("ws/feed/", FeedConsumer.as_asgi()),
]
