"""The demo page and the staff dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from taskstore import conf, states
from taskstore.models import TaskRecord
from taskstore.operations import statistics
from taskstore.operations.views import queues_data, workers_data

# The dashboard shows this many recent failures and remembers this many running tasks' states
# (to move counts from one state to another as transitions arrive).
LATEST_FAILURES = 10
ACTIVE_LIMIT = 1000
CHART_MINUTES = 60


@require_GET
@ensure_csrf_cookie  # the page's script sends the cookie back as X-CSRFToken
def demo(request: HttpRequest) -> HttpResponse:
    """The demo page: start the example tasks and watch them run."""
    user = request.user
    can_submit = user.is_authenticated or conf.anonymous_submit()
    examples = [
        name.rsplit(".", 1)[-1] for name in conf.submittable_tasks() if name.startswith("realtime.tasks.")
    ]
    return render(request, "realtime/demo.html", {"can_submit": can_submit, "examples": examples})


def _staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("The dashboard is for staff.")


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Counts by state, tasks finished per minute, the latest failures, workers, queues and task
    statistics; live from /ws/feed/."""
    _staff(request)
    return render(
        request, "realtime/dashboard.html", {"stats": dashboard_stats(), "windows": list(statistics.WINDOWS)}
    )


@require_GET
@login_required
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's data as JSON: the page fetches it again after each (re)connect."""
    _staff(request)
    return JsonResponse(dashboard_stats())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def dashboard_stats() -> dict[str, Any]:
    """What the dashboard shows, as JSON-ready data."""
    now = timezone.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
    counts = dict(TaskRecord.objects.order_by().values_list("state").annotate(n=Count("pk")))
    per_minute = (
        TaskRecord.objects.filter(date_done__gte=start)
        .annotate(minute=TruncMinute("date_done"))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("pk"))
    )
    failures = TaskRecord.objects.filter(state=states.FAILURE).order_by("-date_done")[:LATEST_FAILURES]
    active = TaskRecord.objects.exclude(state__in=states.TERMINAL_STATES).order_by("-date_created")
    return {
        "now": _iso(now),
        "counts": counts,
        "finished_per_minute": {_iso(minute): n for minute, n in per_minute},
        "failures": [
            {
                "task_id": task.task_id,
                "task_name": task.task_name,
                "error": task.error,
                "date_done": _iso(task.date_done),
                "admin_url": reverse("admin:taskstore_taskrecord_change", args=[task.task_id]),
            }
            for task in failures
        ],
        "active": {
            task_id: [state, version]
            for task_id, state, version in active.values_list("task_id", "state", "version")[:ACTIVE_LIMIT]
        },
        # The operations console (taskstore.operations): workers, queue depths, statistics.
        "workers": workers_data(),
        "queues": queues_data(),
        "statistics": statistics.task_statistics(statistics.WINDOWS[statistics.DEFAULT_WINDOW]),
    }
