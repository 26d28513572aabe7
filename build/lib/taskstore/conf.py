"""The taskstore settings and their defaults, read when used so ``override_settings`` works."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Dotted task names POST /api/tasks/ may send.
    "TASKSTORE_SUBMITTABLE_TASKS": [],
    # Whether anonymous users may submit (default: on only with DEBUG).
    "TASKSTORE_ANONYMOUS_SUBMIT": None,
    # WebSocket limits.
    "TASKSTORE_MAX_SUBSCRIPTIONS": 200,
    "TASKSTORE_RATE_LIMIT": 50,
    "TASKSTORE_RATE_BURST": 100,
    "TASKSTORE_MAX_FRAME_BYTES": 16 * 1024,
    # A pushed result over this many bytes of JSON goes out as null with result_truncated.
    "TASKSTORE_PUSH_RESULT_LIMIT": 64 * 1024,
    # Seconds a finished task is kept before cleanup deletes it.
    "TASKSTORE_RESULT_EXPIRES": 7 * 24 * 3600,
    # Rows deleted per statement by cleanup.
    "TASKSTORE_CLEANUP_BATCH": 500,
    # Seconds a task token stays valid.
    "TASKSTORE_TOKEN_MAX_AGE": 7 * 24 * 3600,
    # Seconds between a subscription's safety checks against the database.
    "TASKSTORE_RECONCILE_INTERVAL": 5.0,
    # Seconds a write keeps retrying on database errors (terminal states keep trying longest).
    "TASKSTORE_WRITE_RETRY_SECONDS": 30.0,
    # Path under which the project routes taskstore's sockets (taskstore.routing): "ws/" serves
    # /ws/tasks/ and /ws/feed/. The admin's live list and the pages read it to find the feed.
    "TASKSTORE_WEBSOCKET_PREFIX": "ws/",
}


def websocket_path(name: str) -> str:
    """The absolute path of one of taskstore's sockets (``"tasks"`` or ``"feed"``)."""
    prefix = str(get("TASKSTORE_WEBSOCKET_PREFIX")).strip("/")
    return f"/{prefix}/{name}/" if prefix else f"/{name}/"


def get(name: str) -> Any:
    """Return the setting ``name``, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} is not a taskstore setting")
    value = getattr(settings, name, DEFAULTS[name])
    if name == "TASKSTORE_ANONYMOUS_SUBMIT" and value is None:
        return bool(settings.DEBUG)
    return value
