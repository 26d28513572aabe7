"""Retention runs by itself: when ``celery beat`` starts, taskstore adds its cleanup task to the
schedule unless the project scheduled it already (or set TASKSTORE_CLEANUP_INTERVAL to 0).

The task, ``taskstore.tasks.cleanup``, is found by the worker through the project's
``app.autodiscover_tasks()``, like any app's tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from taskstore import conf

logger = logging.getLogger(__name__)

CLEANUP_TASK = "taskstore.tasks.cleanup"
ENTRY_NAME = "taskstore-cleanup"


def add_cleanup_entry(sender: Any = None, **_: Any) -> None:
    """``beat_init`` handler: schedule the cleanup every TASKSTORE_CLEANUP_INTERVAL seconds."""
    interval = conf.cleanup_interval()
    scheduler = getattr(sender, "scheduler", None)
    if not interval or scheduler is None:
        return
    if any(getattr(entry, "task", None) == CLEANUP_TASK for entry in scheduler.schedule.values()):
        return
    scheduler.update_from_dict({ENTRY_NAME: {"task": CLEANUP_TASK, "schedule": float(interval)}})
    logger.info("Scheduled %s every %s s (TASKSTORE_CLEANUP_INTERVAL)", CLEANUP_TASK, interval)


def scheduled_in_settings(beat_schedule: Any) -> bool:
    """Whether a ``CELERY_BEAT_SCHEDULE`` value runs the cleanup task."""
    if not isinstance(beat_schedule, dict):
        return False
    return any(isinstance(e, dict) and e.get("task") == CLEANUP_TASK for e in beat_schedule.values())
