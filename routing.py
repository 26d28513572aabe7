"""WebSocket URL patterns."""

from django.urls import path

from consumers.feed import FeedConsumer
from consumers.tasks import TaskConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskConsumer.as_asgi()),
    path("ws/feed/", FeedConsumer.as_asgi()),
]
