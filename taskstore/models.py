"""The task store: one row per task, an append-only event per transition, one row per group.

Rows are written only by :mod:`taskstore.recorder` (every transition, Celery's view of a task, a
group's membership and version, forgetting a task), through :mod:`taskstore.groups` for the group
rows, and deleted when they expire by :mod:`taskstore.retention`. tests/test_write_path.py fails
on a write anywhere else (docs/reliability.md, "The write path").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    # Only for the annotation: taskstore.permissions imports this module.
    from taskstore.permissions import Viewer


class TaskQuerySet(models.QuerySet["TaskRecord"]):
    """Task rows, with the one rule for which of them a viewer may list."""

    def visible_to(self, viewer: Viewer) -> TaskQuerySet:
        """The tasks ``viewer`` may see without a token: all for staff, their own for a user,
        none for anonymous callers.

        Lists and feeds use this; a single id may also be opened with its token
        (:func:`taskstore.permissions.may_see`). :func:`taskstore.permissions.may_see_owned`
        says the same for one document already in hand.
        """
        if viewer.staff:
            return self.all()
        if viewer.user_id is None:
            return self.none()
        return self.filter(owner_id=viewer.user_id)


class TaskRecord(models.Model):
    """The latest recorded state of one Celery task."""

    objects = TaskQuerySet.as_manager()

    task_id = models.CharField("task id", max_length=255, primary_key=True)
    task_name = models.CharField("task name", max_length=255, blank=True, default="")
    state = models.CharField(max_length=50, help_text="The latest recorded Celery state.")
    version = models.PositiveIntegerField(
        default=0, help_text="How many transitions have been recorded: 1, 2, 3, … with no gaps."
    )
    position = models.BigIntegerField(
        default=-1, help_text="Lifecycle position of the latest transition (taskstore.states)."
    )
    transition_key = models.CharField(
        max_length=32, blank=True, default="", help_text="Digest of the latest custom state."
    )
    retries = models.PositiveIntegerField(default=0, help_text="The attempt number, from 0.")
    result = models.JSONField(null=True, blank=True, help_text="The return value, on SUCCESS.")
    progress = models.JSONField(null=True, blank=True, help_text="Meta of the latest custom state.")
    error = models.JSONField(null=True, blank=True, help_text='{"type": …, "message": …}')
    traceback = models.TextField(blank=True, default="")
    args = models.JSONField(null=True, blank=True)
    kwargs = models.JSONField(null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        # Lookups by owner use taskstore_task_owner_idx (owner, -date_created), whose prefix
        # is this column: a second index would only cost every write.
        db_index=False,
        related_name="+",
        help_text="The user the task was sent for.",
    )
    group_id = models.CharField("group id", max_length=255, null=True, blank=True)
    parent_id = models.CharField("parent id", max_length=255, null=True, blank=True)
    worker = models.CharField(max_length=255, null=True, blank=True)
    date_created = models.DateTimeField("created")
    date_started = models.DateTimeField("started", null=True, blank=True)
    date_done = models.DateTimeField("done", null=True, blank=True)
    date_updated = models.DateTimeField("updated")
    celery_meta = models.JSONField(
        "Celery's view",
        null=True,
        blank=True,
        help_text=(
            "What Celery's result API reports, as the result backend last stored it: status, "
            "result (when not in result or progress), children. Null until it stores anything."
        ),
    )

    class Meta:
        verbose_name = "task"
        verbose_name_plural = "tasks"
        ordering = ["-date_created"]
        indexes = [
            models.Index(fields=["-date_created"], name="taskstore_task_created_idx"),
            models.Index(fields=["state", "-date_created"], name="taskstore_task_state_idx"),
            models.Index(fields=["owner", "-date_created"], name="taskstore_task_owner_idx"),
            models.Index(fields=["task_name", "-date_created"], name="taskstore_task_name_idx"),
            models.Index(fields=["group_id"], name="taskstore_task_group_idx"),
            models.Index(fields=["date_done"], name="taskstore_task_done_idx"),
            # What changed since a moment: a feed's catch-up after a channel-layer outage.
            models.Index(fields=["date_updated"], name="taskstore_task_updated_idx"),
            # The operations console (taskstore.operations): a worker's finished tasks since its
            # last heartbeat, and its running ones. (Statistics over a window read
            # taskstore_task_done_idx.)
            models.Index(fields=["worker", "date_done"], name="taskstore_task_worker_idx"),
            models.Index(
                fields=["worker"],
                condition=models.Q(date_done__isnull=True, date_started__isnull=False),
                name="taskstore_task_running_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name or 'task'} {self.task_id} [{self.state} v{self.version}]"


class TaskEvent(models.Model):
    """One recorded transition of a task: the task document as of that version."""

    # No index of its own: taskstore_event_version_uniq (task, version) serves lookups by task, and
    # each of the three to five events a task writes would otherwise update two more indexes.
    task = models.ForeignKey(TaskRecord, on_delete=models.CASCADE, related_name="events", db_index=False)
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=50)
    document = models.JSONField(help_text="The task document as of this version.")
    created = models.DateTimeField()

    class Meta:
        verbose_name = "task event"
        verbose_name_plural = "task events"
        ordering = ["task", "version"]
        constraints = [
            models.UniqueConstraint(fields=["task", "version"], name="taskstore_event_version_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.task_id} v{self.version} {self.state}"


class GroupRecord(models.Model):
    """A group of tasks (``group()`` or a chord header), tracked as its members are recorded."""

    group_id = models.CharField("group id", max_length=255, primary_key=True)
    version = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(
        null=True, blank=True, help_text="Exact size, when the group was saved or is a chord header."
    )
    members = models.JSONField(
        null=True, blank=True, help_text="Member task ids in the group's order, when known."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    date_created = models.DateTimeField("created")
    date_updated = models.DateTimeField("updated")

    class Meta:
        verbose_name = "group"
        verbose_name_plural = "groups"
        ordering = ["-date_created"]
        indexes = [models.Index(fields=["date_updated"], name="taskstore_group_updated_idx")]

    def __str__(self) -> str:
        return f"group {self.group_id} v{self.version}"


# The operations console's tables live in their own module (taskstore.operations).
from taskstore.operations.models import (  # noqa: E402
    ControlAction,
    Lease,
    PushCounters,
    QueueRecord,
    TaskTally,
    WorkerRecord,
)

__all__ = [
    "ControlAction",
    "GroupRecord",
    "Lease",
    "PushCounters",
    "QueueRecord",
    "TaskEvent",
    "TaskRecord",
    "TaskTally",
    "WorkerRecord",
]
