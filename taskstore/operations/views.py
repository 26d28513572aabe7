"""The operations REST API (staff only): workers, queues, statistics, control actions.

Mounted by ``taskstore.urls`` under ``ops/`` (``/api/ops/…`` in the example project). Anyone
who is not active staff gets 403 ``{"error": …}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from taskstore.operations import actions, statistics
from taskstore.operations.documents import action_document, queue_document, worker_document
from taskstore.operations.exceptions import ActionRefused, BadAction, BrokerUnavailable, UnknownWindow
from taskstore.operations.models import ControlAction, QueueRecord, WorkerRecord
from taskstore.permissions import Viewer
from taskstore.rest import CSRF_FAILED, csrf_passes, error, first_error, methods, whole_number

View = Callable[[HttpRequest], JsonResponse]
STAFF_ONLY = "The operations console is for staff."
MAX_ACTIONS = 200
DEFAULT_ACTIONS = 50


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


class ActionsQuery(forms.Form):
    """``GET /api/ops/actions/``'s query: ``limit`` (1 or more, at most 200 are shown)."""

    limit = whole_number("limit", minimum=1)


@csrf_exempt  # read-only: every other method is a JSON 405 (403 for non-staff)
@staff_only
@methods("GET")
def workers(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/workers/``: every known worker."""
    return JsonResponse({"workers": workers_data()})


@csrf_exempt  # read-only: every other method is a JSON 405 (403 for non-staff)
@staff_only
@methods("GET")
def queues(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/queues/``: every watched queue's depth (null: the broker cannot tell)."""
    return JsonResponse({"queues": queues_data()})


@csrf_exempt  # read-only: every other method is a JSON 405 (403 for non-staff)
@staff_only
@methods("GET")
def stats(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/stats/?window=1h``: statistics per task name over the window."""
    try:
        name, window = statistics.window_of(request.GET.get("window"))
    except UnknownWindow as problem:
        return error(400, str(problem))
    return JsonResponse({"window": name, "tasks": statistics.task_statistics(window)})


@csrf_exempt  # checked in take_action(): session users must send the CSRF token
@staff_only
@methods("GET", "POST")
def actions_view(request: HttpRequest) -> JsonResponse:
    """``GET /api/ops/actions/``: the latest actions; ``POST``: take one."""
    if request.method == "POST":
        return take_action(request)
    query = ActionsQuery(request.GET)
    if not query.is_valid():
        return error(400, first_error(query))
    limit = min(query.cleaned_data["limit"] or DEFAULT_ACTIONS, MAX_ACTIONS)
    rows = ControlAction.objects.all()[:limit]
    return JsonResponse({"actions": [action_document(a) for a in rows]})


def take_action(request: HttpRequest) -> JsonResponse:
    """Take the control action the JSON body names, for active staff who passed the CSRF check."""
    if not csrf_passes(request, take_action):
        return error(403, CSRF_FAILED)
    try:
        action, target = actions.parse(json.loads(request.body or b"null"))
    except (ValueError, UnicodeDecodeError) as problem:
        message = str(problem) if isinstance(problem, BadAction) else "The body must be JSON."
        return error(400, message)
    try:
        document = actions.perform(request.user, action, target)
    except ActionRefused as problem:
        return error(409, str(problem))
    except BrokerUnavailable as problem:
        return error(503, str(problem))
    return JsonResponse(document)
