"""System checks for configurations that would fail quietly at run time."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_serializers(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Refuse pickle anywhere in Celery's content settings."""
    problems = []
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
def check_submittable(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """TASKSTORE_SUBMITTABLE_TASKS must be a list of dotted task names."""
    value = getattr(settings, "TASKSTORE_SUBMITTABLE_TASKS", [])
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return [
            Error(
                "TASKSTORE_SUBMITTABLE_TASKS must be a list of task names.",
                id="taskstore.E003",
            )
        ]
    if getattr(settings, "TASKSTORE_ANONYMOUS_SUBMIT", False) and not settings.DEBUG:
        return [
            Warning(
                "TASKSTORE_ANONYMOUS_SUBMIT is on without DEBUG: anyone may send tasks.",
                id="taskstore.W001",
            )
        ]
    return []
