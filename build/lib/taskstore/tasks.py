"""Periodic tasks (run by celery beat, see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from taskstore.retention import delete_expired


@shared_task(name="taskstore.tasks.cleanup", ignore_result=True)
def cleanup() -> int:
    """Delete expired tasks and their events."""
    return delete_expired()
