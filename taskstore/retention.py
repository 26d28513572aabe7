"""Retention: deleting finished tasks (and their events) after TASKSTORE_RESULT_EXPIRES."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from taskstore import conf
from taskstore.models import GroupRecord, TaskEvent, TaskRecord

logger = logging.getLogger(__name__)


def delete_expired(expires: float | None = None, batch_size: int | None = None) -> int:
    """Delete tasks that finished more than ``expires`` seconds ago; return how many.

    Works in batches, each its own short transaction, so no lock is held for long and a
    busy table keeps serving writes between batches.
    """
    seconds = conf.result_expires() if expires is None else expires
    size = batch_size or conf.cleanup_batch()
    cutoff = timezone.now() - timedelta(seconds=seconds)
    deleted = 0
    while True:
        ids = list(
            TaskRecord.objects.filter(date_done__lt=cutoff)
            .order_by("date_done")
            .values_list("task_id", flat=True)[:size]
        )
        if not ids:
            break
        with transaction.atomic():
            TaskEvent.objects.filter(task_id__in=ids).delete()
            deleted += (
                TaskRecord.objects.filter(task_id__in=ids, date_done__lt=cutoff)
                .delete()[1]
                .get(TaskRecord._meta.label, 0)
            )
    groups = GroupRecord.objects.filter(date_updated__lt=cutoff).exclude(
        group_id__in=TaskRecord.objects.filter(group_id__isnull=False).values("group_id")
    )
    groups.delete()
    if deleted:
        logger.info("Deleted %d expired tasks", deleted)
    return deleted
