"""The taskstore settings and their defaults, read when used so ``override_settings`` works.

Each setting has a rule; :func:`problems` lists the values that break theirs, and the app
refuses to start with any (``TaskstoreConfig.ready``), naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    # Bytes of frames a socket may have unsent before it is closed with 4408 (0: no limit).
    "TASKSTORE_SEND_BUFFER_BYTES": 256 * 1024,
    # A pushed result over this many bytes of JSON goes out as null with result_truncated.
    "TASKSTORE_PUSH_RESULT_LIMIT": 64 * 1024,
    # Seconds a finished task is kept before cleanup deletes it.
    "TASKSTORE_RESULT_EXPIRES": 7 * 24 * 3600,
    # Rows deleted per statement by cleanup.
    "TASKSTORE_CLEANUP_BATCH": 500,
    # Seconds between cleanups that celery beat runs by itself (taskstore.schedule); 0: never.
    "TASKSTORE_CLEANUP_INTERVAL": 3600,
    # Seconds a task token stays valid.
    "TASKSTORE_TOKEN_MAX_AGE": 7 * 24 * 3600,
    # Seconds between a subscription's safety checks against the database.
    "TASKSTORE_RECONCILE_INTERVAL": 5.0,
    # Seconds a write keeps retrying on database errors (terminal states keep trying longest).
    "TASKSTORE_WRITE_RETRY_SECONDS": 30.0,
    # Seconds a pool child holds a task's STARTED: a task that ends sooner records STARTED and
    # its final state in one statement (taskstore.linger); 0 records STARTED at once.
    "TASKSTORE_STARTED_LINGER": 0.05,
    # Path under which the project routes taskstore's sockets (taskstore.routing): "ws/" serves
    # /ws/tasks/ and /ws/feed/. The admin's live list and the pages read it to find the feed.
    "TASKSTORE_WEBSOCKET_PREFIX": "ws/",
    # The operations console (docs/operations.md). Seconds between a worker's heartbeats; a
    # worker whose heartbeat is this late shows as lost; seconds between the monitor's rounds
    # (lost workers, queue depths, metric totals), which one process at a time runs.
    "TASKSTORE_WORKER_HEARTBEAT": 5.0,
    "TASKSTORE_WORKER_LOST_AFTER": 30.0,
    "TASKSTORE_MONITOR_INTERVAL": 5.0,
    # Queue names whose depth is read even while no worker consumes them (the default queue,
    # CELERY_TASK_QUEUES and every queue a known worker consumes are read anyway).
    "TASKSTORE_WATCH_QUEUES": [],
    # A bearer token a Prometheus scraper may send to /metrics (staff sessions need none).
    "TASKSTORE_METRICS_TOKEN": None,
}


def get(name: str) -> Any:
    """Return the setting ``name``, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} is not a taskstore setting")
    value = getattr(settings, name, DEFAULTS[name])
    if name == "TASKSTORE_ANONYMOUS_SUBMIT" and value is None:
        return bool(settings.DEBUG)
    return value


def websocket_path(name: str) -> str:
    """The absolute path of one of taskstore's sockets (``"tasks"`` or ``"feed"``)."""
    prefix = str(get("TASKSTORE_WEBSOCKET_PREFIX")).strip("/")
    return f"/{prefix}/{name}/" if prefix else f"/{name}/"


# --- rules -----------------------------------------------------------------------------------


def _number(minimum: float, whole: bool) -> Callable[[Any], str | None]:
    kind = "a whole number" if whole else "a number"

    def rule(value: Any) -> str | None:
        allowed = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or value < minimum:
            return f"must be {kind}, {minimum:g} or more"
        return None

    return rule


def _task_names(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        return "must be a list of dotted task names"
    return None


def _optional_bool(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "must be True, False or None"


_PATH = re.compile(r"^[A-Za-z0-9._~/-]*$")


def _prefix(value: Any) -> str | None:
    if not isinstance(value, str) or not _PATH.match(value):
        return 'must be a URL path such as "ws/" (letters, digits, ".", "_", "-", "~" and "/")'
    return None


def _queue_names(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        return "must be a list of queue names"
    return None


def _optional_token(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and len(value) >= 16):
        return None
    return "must be None or a string of 16 characters or more"


RULES: dict[str, Callable[[Any], str | None]] = {
    "TASKSTORE_SUBMITTABLE_TASKS": _task_names,
    "TASKSTORE_ANONYMOUS_SUBMIT": _optional_bool,
    "TASKSTORE_MAX_SUBSCRIPTIONS": _number(1, whole=True),
    "TASKSTORE_RATE_LIMIT": _number(1, whole=False),
    "TASKSTORE_RATE_BURST": _number(1, whole=True),
    "TASKSTORE_MAX_FRAME_BYTES": _number(256, whole=True),
    "TASKSTORE_SEND_BUFFER_BYTES": _number(0, whole=True),
    "TASKSTORE_PUSH_RESULT_LIMIT": _number(0, whole=True),
    "TASKSTORE_RESULT_EXPIRES": _number(1, whole=True),
    "TASKSTORE_CLEANUP_BATCH": _number(1, whole=True),
    "TASKSTORE_CLEANUP_INTERVAL": _number(0, whole=False),
    "TASKSTORE_TOKEN_MAX_AGE": _number(1, whole=True),
    "TASKSTORE_RECONCILE_INTERVAL": _number(0, whole=False),
    "TASKSTORE_WRITE_RETRY_SECONDS": _number(0, whole=False),
    "TASKSTORE_STARTED_LINGER": _number(0, whole=False),
    "TASKSTORE_WEBSOCKET_PREFIX": _prefix,
    "TASKSTORE_WORKER_HEARTBEAT": _number(0.1, whole=False),
    "TASKSTORE_WORKER_LOST_AFTER": _number(0.5, whole=False),
    "TASKSTORE_MONITOR_INTERVAL": _number(0.1, whole=False),
    "TASKSTORE_WATCH_QUEUES": _queue_names,
    "TASKSTORE_METRICS_TOKEN": _optional_token,
}


def problems() -> list[str]:
    """One message per taskstore setting whose value breaks its rule (none when all are fine)."""
    found = []
    for name, rule in RULES.items():
        value = getattr(settings, name, DEFAULTS[name])
        trouble = rule(value)
        if trouble is not None:
            found.append(f"{name} {trouble}, not {value!r}.")
    beat = getattr(settings, "TASKSTORE_WORKER_HEARTBEAT", DEFAULTS["TASKSTORE_WORKER_HEARTBEAT"])
    lost = getattr(settings, "TASKSTORE_WORKER_LOST_AFTER", DEFAULTS["TASKSTORE_WORKER_LOST_AFTER"])
    if not found and lost <= 2 * beat:
        found.append(
            f"TASKSTORE_WORKER_LOST_AFTER must be more than twice TASKSTORE_WORKER_HEARTBEAT "
            f"({lost!r} <= 2 * {beat!r}): a worker would show as lost between two heartbeats."
        )
    return found
