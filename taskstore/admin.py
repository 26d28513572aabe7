"""The admin: tasks and groups, read-only; the task list updates live over the feed socket.

Rows are written only by the recorder, so nothing here adds, changes or deletes them; the
actions, revoking, terminating and re-running, go through :mod:`taskstore.operations.actions`
(and so through :mod:`taskstore.control` and the recorder), each recorded as a control action.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString

from taskstore import conf, states
from taskstore.documents import for_viewer, task_document
from taskstore.models import GroupRecord, TaskEvent, TaskRecord
from taskstore.operations.actions import allowed as control_allowed
from taskstore.operations.actions import perform as perform_action
from taskstore.operations.exceptions import ActionRefused, BrokerUnavailable
from taskstore.permissions import Viewer


class ReadOnlyMixin:
    """Nobody adds, changes or deletes rows here: each table has its own write path (the recorder,
    the operations console's)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the admin shows the stored state, it does not edit it."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: ``manage.py taskstore_cleanup`` deletes expired rows."""
        return False


def _time(value: datetime | None, field: str) -> SafeString:
    # The script shows every <time> in the browser's time zone, rows it adds included.
    if value is None:
        return format_html('<time data-field="{}">-</time>', field)
    shown = formats.localize(timezone.localtime(value))
    return format_html('<time data-field="{}" datetime="{}">{}</time>', field, value.isoformat(), shown)


def _progress(progress: Any) -> str:
    if isinstance(progress, dict) and "current" in progress and "total" in progress:
        return f"{progress['current']}/{progress['total']}"
    return ""


class TaskEventInline(ReadOnlyMixin, admin.TabularInline):
    """Every recorded transition of the task, oldest first."""

    model = TaskEvent
    fields = ("version", "state", "created", "document")
    readonly_fields = fields
    ordering = ("version",)
    extra = 0
    can_delete = False
    classes = ("collapse",)


@admin.register(TaskRecord)
class TaskRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The task list, live: new tasks appear at the top, cells change as transitions arrive.

    Cells the script updates carry ``data-field``; the state cell also carries the row's
    ``data-task-id`` and ``data-version``. See ``static/taskstore/admin-live.js``.
    """

    list_display = (
        "task_id",
        "task_name",
        "state_cell",
        "version_cell",
        "progress_cell",
        "owner",
        "worker_cell",
        "created_cell",
        "done_cell",
    )
    list_display_links = ("task_id",)
    list_filter = ("state", "task_name", "owner", "date_created")
    search_fields = ("task_id", "task_name")
    list_select_related = ("owner",)
    # Counting every row for "N total" is slow on a big table.
    show_full_result_count = False
    actions = ("revoke_selected", "terminate_selected", "rerun_selected")
    inlines = (TaskEventInline,)
    fieldsets = (
        (None, {"fields": ("task_id", "task_name", "state", "version", "retries", "owner", "worker")}),
        ("Outcome", {"fields": ("result", "progress", "error", "traceback")}),
        ("Call", {"fields": ("args", "kwargs", "group_id", "parent_id")}),
        ("Dates", {"fields": ("date_created", "date_started", "date_done", "date_updated")}),
        ("Bookkeeping", {"fields": ("position", "transition_key"), "classes": ("collapse",)}),
    )

    @admin.display(description="state", ordering="state")
    def state_cell(self, task: TaskRecord) -> SafeString:
        """The state, marked for the live script."""
        return format_html(
            '<span class="taskstore-state" data-field="state" data-task-id="{}" data-version="{}" '
            'data-state="{}">{}</span>',
            task.task_id,
            task.version,
            task.state,
            task.state,
        )

    @admin.display(description="version", ordering="version")
    def version_cell(self, task: TaskRecord) -> SafeString:
        """The version."""
        return format_html('<span data-field="version">{}</span>', task.version)

    @admin.display(description="progress")
    def progress_cell(self, task: TaskRecord) -> SafeString:
        """``current/total`` of the latest progress report."""
        return format_html('<span data-field="progress">{}</span>', _progress(task.progress))

    @admin.display(description="worker", ordering="worker")
    def worker_cell(self, task: TaskRecord) -> SafeString:
        """The worker that ran it."""
        return format_html('<span data-field="worker">{}</span>', task.worker or "-")

    @admin.display(description="created", ordering="date_created")
    def created_cell(self, task: TaskRecord) -> SafeString:
        """When it was sent."""
        return _time(task.date_created, "date_created")

    @admin.display(description="done", ordering="date_done")
    def done_cell(self, task: TaskRecord) -> SafeString:
        """When it ended."""
        return _time(task.date_done, "date_done")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """Revoking needs the change permission on tasks (superusers have it)."""
        return bool(request.user.has_perm("taskstore.change_taskrecord"))

    @admin.action(description="Revoke selected tasks", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        """Revoke each selected task through the operations console's revoke action."""
        selected = dict(queryset.values_list("task_id", "state"))
        running = [task_id for task_id, state in selected.items() if state not in states.TERMINAL_STATES]
        for task_id in running:
            # Recorded as a control action (who, when) and pushed, like the console's; a task that
            # ended meanwhile is refused, and counted below from the table.
            with contextlib.suppress(ActionRefused):
                perform_action(request.user, "revoke", task_id)
        # Count from the table, not from revoke()'s answer: on the revoke broadcast a worker may
        # record REVOKED itself (Celery marks a waiting task revoked in the result backend), and
        # whichever write comes first is the one recorded.
        revoked = TaskRecord.objects.filter(task_id__in=running, state=states.REVOKED).count()
        ended = len(selected) - revoked
        message = f"Revoked {revoked} task{'s' if revoked != 1 else ''}."
        if ended:
            message += f" {ended} had already ended and kept {'their' if ended != 1 else 'its'} state."
        self.message_user(request, message, messages.SUCCESS if revoked else messages.WARNING)

    def has_control_permission(self, request: HttpRequest) -> bool:
        """Terminating and re-running are for active staff (the operations console's rule)."""
        return control_allowed(Viewer.of(request.user))

    @admin.action(description="Terminate selected running tasks", permissions=["control"])
    def terminate_selected(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        """Terminate each selected running task (recorded as a control action)."""
        self._control(request, queryset, "terminate")

    @admin.action(description="Re-run selected finished tasks", permissions=["control"])
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        """Send each selected finished task again with the same arguments (a new task)."""
        self._control(request, queryset, "rerun")

    def _control(self, request: HttpRequest, queryset: QuerySet[TaskRecord], action: str) -> None:
        done, refused = 0, []
        for task_id in queryset.values_list("task_id", flat=True):
            try:
                perform_action(request.user, action, task_id)
                done += 1
            except (ActionRefused, BrokerUnavailable) as problem:
                refused.append(str(problem))
        if done:
            self.message_user(
                request, f"{action.capitalize()}: {done} task{'s' if done != 1 else ''}.", messages.SUCCESS
            )
        for reason in refused[:10]:
            self.message_user(request, reason, messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        """The admin's URLs plus ``live/``, before the catch-all object URLs."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_live"
        return [path("live/", self.admin_site.admin_view(self.live_view), name=name), *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, with what the live script needs."""
        columns = list(self.get_list_display(request))
        if self.get_actions(request):
            columns.insert(0, "action_checkbox")
        live = {
            # Where the project routes the feed (TASKSTORE_WEBSOCKET_PREFIX), read per request.
            "feed_url": conf.websocket_path("feed"),
            "live_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_live"),
            "columns": columns,
            # New tasks belong at the top of the default list only: not in a filtered, searched,
            # sorted or later page.
            "insert": not request.GET,
            "rendered_at": timezone.now().isoformat(),
        }
        return super().changelist_view(request, {**(extra_context or {}), "taskstore_live": live})

    def live_view(self, request: HttpRequest) -> JsonResponse:
        """Rows for the live script: tasks by ``id`` (repeatable) and tasks newer than ``newer_than``."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = request.GET.getlist("id")[: self.list_per_page]
        query = Q(task_id__in=ids)
        newer_than = parse_datetime(request.GET.get("newer_than", ""))
        if newer_than is not None:
            query |= Q(date_created__gt=newer_than)
        records = TaskRecord.objects.select_related("owner").filter(query)[: self.list_per_page]
        app, model = self.opts.app_label, self.opts.model_name
        return JsonResponse(
            {
                "tasks": [
                    {
                        # The row shows no staff-only field; keep the answer small.
                        **for_viewer(task_document(task), staff=False),
                        "owner": str(task.owner) if task.owner else None,
                        "change_url": reverse(f"admin:{app}_{model}_change", args=[quote(task.task_id)]),
                    }
                    for task in records
                ]
            }
        )


@admin.register(GroupRecord)
class GroupRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Groups and chord headers, read-only."""

    list_display = ("group_id", "version", "total", "member_tasks", "owner", "date_created", "date_updated")
    list_filter = ("date_created",)
    search_fields = ("group_id",)
    list_select_related = ("owner",)
    show_full_result_count = False

    @admin.display(description="members")
    def member_tasks(self, group: GroupRecord) -> SafeString:
        """A link to the group's member tasks in the task list."""
        url = reverse("admin:taskstore_taskrecord_changelist")
        return format_html('<a href="{}?{}">tasks</a>', url, urlencode({"group_id": group.group_id}))


# The operations console's pages (workers, queues, control actions) register themselves.
from taskstore.operations import admin as operations_admin  # noqa: E402, F401
