"""The taskstore settings: one table of them, each with its default and its rule, read when used
so ``override_settings`` works.

Each setting is read through its own typed accessor (``conf.max_subscriptions()`` is an ``int``).
:func:`problems` lists the values that break their rules; the app refuses to start with any
(``TaskstoreConfig.ready``), naming the setting, and an accessor refuses such a value the same
way when one is set later (``override_settings`` in a test).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


@dataclass(frozen=True)
class Rule(Generic[T]):
    """What a setting's value must be (``describe``: "a whole number, 1 or more"), and how a
    value that is so is read."""

    describe: str
    accepts: Callable[[Any], bool]
    read: Callable[[Any], T]


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One taskstore setting. Call it for its value (the default when the project sets none)."""

    name: str
    default: Any
    rule: Rule[T]

    def raw(self) -> Any:
        """The value as the project set it (or the default), before its rule is applied."""
        return getattr(settings, self.name, self.default)

    def problem(self) -> str | None:
        """Why the value breaks the rule (a sentence naming the setting), or None."""
        value = self.raw()
        if self.rule.accepts(value):
            return None
        return f"{self.name} must be {self.rule.describe}, not {value!r}."

    def __call__(self) -> T:
        """The value, read now; ImproperlyConfigured when it breaks the rule."""
        value = self.raw()
        if not self.rule.accepts(value):
            raise ImproperlyConfigured(self.problem())
        return self.rule.read(value)


# --- rules -----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(minimum: int) -> Rule[int]:
    """A whole number, ``minimum`` or more."""
    return Rule(
        f"a whole number, {minimum} or more",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        int,
    )


def number(minimum: float) -> Rule[float]:
    """A number (whole or not), ``minimum`` or more."""
    return Rule(f"a number, {minimum:g} or more", lambda v: _is_number(v) and v >= minimum, float)


def names(what: str) -> Rule[tuple[str, ...]]:
    """A list (or tuple) of non-empty strings, read as a tuple."""
    return Rule(
        f"a list of {what}",
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v),
        tuple,
    )


def _debug_unless_set(value: bool | None) -> bool:
    return bool(settings.DEBUG) if value is None else value


_PATH = re.compile(r"^[A-Za-z0-9._~/-]*$")

OPTIONAL_BOOL: Rule[bool] = Rule(
    "True, False or None",
    lambda v: v is None or isinstance(v, bool),
    _debug_unless_set,
)
URL_PATH: Rule[str] = Rule(
    'a URL path such as "ws/" (letters, digits, ".", "_", "-", "~" and "/")',
    lambda v: isinstance(v, str) and _PATH.match(v) is not None,
    str,
)
OPTIONAL_TOKEN: Rule[str | None] = Rule(
    "None or a string of 16 characters or more",
    lambda v: v is None or (isinstance(v, str) and len(v) >= 16),
    lambda v: v,
)


# --- the settings ----------------------------------------------------------------------------

# Dotted task names POST /api/tasks/ may send.
submittable_tasks = Setting("TASKSTORE_SUBMITTABLE_TASKS", [], names("dotted task names"))
# Whether anonymous users may submit (None: on only with DEBUG).
anonymous_submit = Setting("TASKSTORE_ANONYMOUS_SUBMIT", None, OPTIONAL_BOOL)
# WebSocket limits: subscriptions per socket, client frames per second and the burst allowed,
# the largest client frame.
max_subscriptions = Setting("TASKSTORE_MAX_SUBSCRIPTIONS", 200, whole(1))
rate_limit = Setting("TASKSTORE_RATE_LIMIT", 50, number(1))
rate_burst = Setting("TASKSTORE_RATE_BURST", 100, whole(1))
max_frame_bytes = Setting("TASKSTORE_MAX_FRAME_BYTES", 16 * 1024, whole(256))
# Bytes of frames a socket may have unsent before it is closed with 4408 (0: no limit).
send_buffer_bytes = Setting("TASKSTORE_SEND_BUFFER_BYTES", 256 * 1024, whole(0))
# A pushed result over this many bytes of JSON goes out as null with result_truncated.
push_result_limit = Setting("TASKSTORE_PUSH_RESULT_LIMIT", 64 * 1024, whole(0))
# Seconds a finished task is kept before cleanup deletes it.
result_expires = Setting("TASKSTORE_RESULT_EXPIRES", 7 * 24 * 3600, whole(1))
# Rows deleted per statement by cleanup.
cleanup_batch = Setting("TASKSTORE_CLEANUP_BATCH", 500, whole(1))
# Seconds between cleanups that celery beat runs by itself (taskstore.schedule); 0: never.
cleanup_interval = Setting("TASKSTORE_CLEANUP_INTERVAL", 3600, number(0))
# Seconds a task token stays valid.
token_max_age = Setting("TASKSTORE_TOKEN_MAX_AGE", 7 * 24 * 3600, whole(1))
# Seconds between a subscription's safety checks against the database (0: none).
reconcile_interval = Setting("TASKSTORE_RECONCILE_INTERVAL", 5.0, number(0))
# Seconds a write keeps retrying on database errors (terminal states keep trying longest).
write_retry_seconds = Setting("TASKSTORE_WRITE_RETRY_SECONDS", 30.0, number(0))
# Seconds a pool child holds a task's STARTED: a task that ends sooner records STARTED and its
# final state in one statement (taskstore.linger); 0 records STARTED at once.
started_linger = Setting("TASKSTORE_STARTED_LINGER", 0.05, number(0))
# Seconds a worker's main process holds a task's RECEIVED: a task that starts sooner has it
# written by its pool child with STARTED (and the end, if that came within the STARTED linger) in
# one statement (taskstore.received); 0 records RECEIVED at once. Long enough to cover the wait
# of a worker's prefetched messages on a loaded machine, where the main process and the child
# would otherwise race to write it.
received_linger = Setting("TASKSTORE_RECEIVED_LINGER", 0.25, number(0))
# Path under which the project routes taskstore's sockets (taskstore.routing): "ws/" serves
# /ws/tasks/ and /ws/feed/. The admin's live list and the pages read it to find the feed.
websocket_prefix = Setting("TASKSTORE_WEBSOCKET_PREFIX", "ws/", URL_PATH)
# The operations console (docs/operations.md). Seconds between a worker's heartbeats; a worker
# whose heartbeat is this late shows as lost; seconds between the monitor's rounds (lost
# workers, queue depths, metric totals), which one process at a time runs.
worker_heartbeat = Setting("TASKSTORE_WORKER_HEARTBEAT", 5.0, number(0.1))
worker_lost_after = Setting("TASKSTORE_WORKER_LOST_AFTER", 30.0, number(0.5))
monitor_interval = Setting("TASKSTORE_MONITOR_INTERVAL", 5.0, number(0.1))
# Queue names whose depth is read even while no worker consumes them (the default queue,
# CELERY_TASK_QUEUES and every queue a known worker consumes are read anyway).
watch_queues = Setting("TASKSTORE_WATCH_QUEUES", [], names("queue names"))
# A bearer token a Prometheus scraper may send to /metrics (staff sessions need none).
metrics_token = Setting("TASKSTORE_METRICS_TOKEN", None, OPTIONAL_TOKEN)

SETTINGS: tuple[Setting[Any], ...] = (
    submittable_tasks,
    anonymous_submit,
    max_subscriptions,
    rate_limit,
    rate_burst,
    max_frame_bytes,
    send_buffer_bytes,
    push_result_limit,
    result_expires,
    cleanup_batch,
    cleanup_interval,
    token_max_age,
    reconcile_interval,
    write_retry_seconds,
    started_linger,
    received_linger,
    websocket_prefix,
    worker_heartbeat,
    worker_lost_after,
    monitor_interval,
    watch_queues,
    metrics_token,
)


def problems() -> list[str]:
    """One message per taskstore setting whose value breaks its rule (none when all are fine)."""
    found = [trouble for setting in SETTINGS if (trouble := setting.problem()) is not None]
    if not found:
        beat, lost = worker_heartbeat(), worker_lost_after()
        if lost <= 2 * beat:
            found.append(
                f"{worker_lost_after.name} must be more than twice {worker_heartbeat.name} "
                f"({worker_lost_after.raw()!r} <= 2 * {worker_heartbeat.raw()!r}): a worker would "
                "show as lost between two heartbeats."
            )
    return found


def websocket_path(name: str) -> str:
    """The absolute path of one of taskstore's sockets (``"tasks"`` or ``"feed"``)."""
    prefix = websocket_prefix().strip("/")
    return f"/{prefix}/{name}/" if prefix else f"/{name}/"
