"""The admin's live workers list and queues view, and the log of control actions.

Both pages are drawn by ``static/taskstore/admin-operations.js`` from the data they come with,
then kept current from the staff feed (``worker.update``, ``queue.update``) without a reload.
Rows are written only by the operations write paths, so nothing here adds, changes or deletes.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from taskstore import conf

# taskstore.admin imports this module last, once ReadOnlyMixin is defined.
from taskstore.admin import ReadOnlyMixin
from taskstore.operations import views
from taskstore.operations.models import ControlAction, QueueRecord, WorkerRecord
from taskstore.permissions import Viewer


class LivePage(ReadOnlyMixin, admin.ModelAdmin):
    """A list drawn and kept live by admin-operations.js instead of Django's change list."""

    kind = ""
    title = ""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The live page, with the data it starts from."""
        if not self.has_view_permission(request) or not Viewer.of(request.user).staff:
            raise PermissionDenied
        data = views.workers_data() if self.kind == "workers" else views.queues_data()
        config = {
            "kind": self.kind,
            "feed_url": conf.websocket_path("feed"),
            "data_url": reverse(f"taskstore:ops-{self.kind}"),
            "actions_url": reverse("taskstore:ops-actions"),
            self.kind: data,
        }
        context = {
            **self.admin_site.each_context(request),
            "title": self.title,
            "opts": self.model._meta,
            "kind": self.kind,
            "taskstore_operations": config,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/taskstore/operations.html", context)


@admin.register(WorkerRecord)
class WorkerRecordAdmin(LivePage):
    """Workers, live: online, lost (heartbeat late) or offline, with what they run."""

    kind = "workers"
    title = "Workers"


@admin.register(QueueRecord)
class QueueRecordAdmin(LivePage):
    """Queue depths, live, as the monitor reads them from the broker; purge from here."""

    kind = "queues"
    title = "Queues"


@admin.register(ControlAction)
class ControlActionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Who did what, when: every control action."""

    list_display = ("created", "action", "target", "username", "ok", "detail")
    list_filter = ("action", "ok", "created")
    search_fields = ("target", "username")
    show_full_result_count = False
