"""System checks for configurations that would fail quietly at run time.

Each message names the fix. Ids: ``taskstore.E…`` errors, ``taskstore.W…`` warnings,
``taskstore.I…`` information (docs/install.md lists them all).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning, register

from taskstore import conf, layers, schedule

OWNER_MIDDLEWARE = "taskstore.middleware.TaskOwnerMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
BACKEND = "taskstore.backend:DatabaseBackend"
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


@register()
def check_serializers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Refuse pickle anywhere in Celery's content settings."""
    problems: list[CheckMessage] = []
    for name in ("CELERY_ACCEPT_CONTENT", "CELERY_RESULT_ACCEPT_CONTENT"):
        value = getattr(settings, name, None) or []
        if any("pickle" in str(item) for item in value):
            problems.append(
                Error(
                    f"{name} accepts pickle.",
                    hint="taskstore stores and pushes JSON only: use ['json'].",
                    id="taskstore.E001",
                )
            )
    for name in ("CELERY_TASK_SERIALIZER", "CELERY_RESULT_SERIALIZER"):
        if getattr(settings, name, "json") == "pickle":
            problems.append(Error(f"{name} is pickle.", hint="Use 'json'.", id="taskstore.E002"))
    return problems


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every taskstore setting keeps its rule (taskstore.conf, the table the app's start-up
    refusal reads too; this reports values set since, as ``override_settings`` does)."""
    return [
        Error(problem, hint="docs/configuration.md gives each setting's rule.", id="taskstore.E006")
        for problem in conf.problems()
    ]


@register()
def check_submission(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Anonymous submission is for development servers."""
    # (A value that breaks its rule is taskstore.E006's to report.)
    if conf.anonymous_submit.problem() is None and conf.anonymous_submit() and not settings.DEBUG:
        return [
            Warning(
                "TASKSTORE_ANONYMOUS_SUBMIT is on without DEBUG: anyone may send tasks.",
                hint="Set TASKSTORE_ANONYMOUS_SUBMIT = False unless that is what you want.",
                id="taskstore.W001",
            )
        ]
    return []


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A channel layer must exist, reach every process, and keep idle sockets."""
    configured = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default = configured.get("default") if isinstance(configured, dict) else None
    if not isinstance(default, dict) or not default.get("BACKEND"):
        return [
            Error(
                "CHANNEL_LAYERS has no 'default' layer: nothing can be pushed to WebSockets.",
                hint=(
                    'Add CHANNEL_LAYERS = {"default": taskstore.layers.redis_channel_layer(REDIS_URL)} '
                    "(pip install django-taskstore-live[redis]), or for one process in development "
                    '{"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}.'
                ),
                id="taskstore.E004",
            )
        ]
    problems: list[CheckMessage] = []
    if default["BACKEND"] == IN_MEMORY_LAYER and not settings.DEBUG:
        problems.append(
            Warning(
                "The in-memory channel layer only reaches sockets of the process that records: "
                "transitions recorded by Celery workers never reach the browser.",
                hint="Use channels-redis (taskstore.layers.redis_channel_layer) outside development.",
                id="taskstore.W002",
            )
        )
    for alias in layers.short_read_timeouts(configured):
        problems.append(
            Warning(
                f"CHANNEL_LAYERS[{alias!r}] has a Redis host whose socket_timeout is not above "
                f"channels-redis' {layers.BLOCKING_READ_SECONDS} s blocking read: idle sockets drop.",
                hint=f"Remove socket_timeout (taskstore sets {layers.READ_TIMEOUT_SECONDS} s) or raise it.",
                id="taskstore.W004",
            )
        )
    return problems


@register()
def check_owner_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Tasks sent while a request is handled belong to its user only with the middleware in place."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if OWNER_MIDDLEWARE not in middleware:
        return [
            Warning(
                f"{OWNER_MIDDLEWARE} is not in MIDDLEWARE: tasks sent from views have no owner, "
                "so their users can follow them only with a token.",
                hint=f"Add it to MIDDLEWARE after {AUTH_MIDDLEWARE}.",
                id="taskstore.W003",
            )
        ]
    if AUTH_MIDDLEWARE not in middleware or middleware.index(OWNER_MIDDLEWARE) < middleware.index(
        AUTH_MIDDLEWARE
    ):
        return [
            Error(
                f"{OWNER_MIDDLEWARE} must come after {AUTH_MIDDLEWARE}: before it there is no "
                "request.user, and no task gets an owner.",
                hint=f"Move it below {AUTH_MIDDLEWARE} in MIDDLEWARE.",
                id="taskstore.E005",
            )
        ]
    return []


@register()
def check_result_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Say what a project gives up with another result backend (it still works)."""
    backend = getattr(settings, "CELERY_RESULT_BACKEND", None)
    if backend in (BACKEND, "taskstore.backend.DatabaseBackend"):
        return []
    return [
        Info(
            f"CELERY_RESULT_BACKEND is {backend!r}, not taskstore's: every state is still recorded "
            "and pushed by the signal handlers, but update_state() progress is not, and "
            "AsyncResult.get() reads the other backend.",
            hint=f'Set CELERY_RESULT_BACKEND = "{BACKEND}" to keep results and progress in one place.',
            id="taskstore.I001",
        )
    ]


@register()
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Finished tasks are deleted only if something runs the cleanup."""
    if conf.cleanup_interval.problem() is not None:
        return []  # taskstore.E006 reports it
    if conf.cleanup_interval() or schedule.scheduled_in_settings(
        getattr(settings, "CELERY_BEAT_SCHEDULE", None)
    ):
        return []
    return [
        Warning(
            "TASKSTORE_CLEANUP_INTERVAL is 0 and CELERY_BEAT_SCHEDULE has no taskstore.tasks.cleanup: "
            "finished tasks are never deleted.",
            hint="Schedule it, or run `manage.py taskstore_cleanup` from cron.",
            id="taskstore.W005",
        )
    ]
