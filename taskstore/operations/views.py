"""The operations REST API (staff only): workers, queues, statistics, control actions.

Mounted by ``taskstore.urls`` under ``ops/`` (``/api/ops/…`` in the example project). Anyone
who is not active staff gets 403 ``{"error": …}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from taskstore.api import BadInput, csrf_problem, error, not_allowed, whole_number
from taskstore.operations import actions, statistics
from taskstore.operations.documents import action_document, queue_document, worker_document
from taskstore.operations.models import ControlAction, QueueRecord, WorkerRecord
from taskstore.permissions import Viewer

View = Callable[[HttpRequest], JsonResponse]
STAFF_ONLY = "The operations console is for staff."
MAX_ACTIONS = 200


def staff_only(view: View) -> View:
    """Answer 403 unless the caller is active staff."""

    @wraps(view)
    def checked(request: HttpRequest) -> JsonResponse:
        if not Viewer.of(request.user).staff:
            return error(403, STAFF_ONLY)
        return view(request)

    return checked


def workers_data() -> list[dict[str, Any]]:
    """Every known worker's document, status as of now."""
    now = timezone.now()
    return [worker_document(w, now) for w in WorkerRecord.objects.all()]


def queues_data() -> list[dict[str, Any]]:
    """Every watched queue's last read depth."""
    return [queue_document(q) for q in QueueRecord.objects.all()]


@staff_only
def workers(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/workers/``: every known worker."""
    if request.method != "GET":
        return not_allowed("GET")
    return JsonResponse({"workers": workers_data()})


@staff_only
def queues(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/queues/``: every watched queue's depth (null: the broker cannot tell)."""
    if request.method != "GET":
        return not_allowed("GET")
    return JsonResponse({"queues": queues_data()})


@staff_only
def stats(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/stats/?window=1h``: statistics per task name over the window."""
    if request.method != "GET":
        return not_allowed("GET")
    try:
        name, window = statistics.window_of(request.GET.get("window"))
    except statistics.UnknownWindow as problem:
        return error(400, str(problem))
    return JsonResponse({"window": name, "tasks": statistics.task_statistics(window)})


@csrf_exempt  # checked below: session users must send the CSRF token
@staff_only
def actions_view(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/actions/``: the latest actions; ``POST``: take one."""
    if request.method == "GET":
        try:
            limit = min(whole_number(request.GET.get("limit"), "limit", default=50, minimum=1), MAX_ACTIONS)
        except BadInput as problem:
            return error(400, str(problem))
        rows = ControlAction.objects.all()[:limit]
        return JsonResponse({"actions": [action_document(a) for a in rows]})
    if request.method != "POST":
        return not_allowed("GET", "POST")
    reason = csrf_problem(request)
    if reason is not None:
        return error(403, f"CSRF check failed: {reason}. Send the X-CSRFToken header.")
    try:
        action, target = actions.parse(json.loads(request.body or b"null"))
    except (ValueError, UnicodeDecodeError) as problem:
        message = str(problem) if isinstance(problem, actions.BadAction) else "The body must be JSON."
        return error(400, message)
    try:
        document = actions.perform(request.user, action, target)
    except actions.ActionRefused as problem:
        return error(409, str(problem))
    except actions.BrokerUnavailable as problem:
        return error(503, str(problem))
    return JsonResponse(document)
