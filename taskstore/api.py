"""The REST API (docs/protocol.md, "REST"): plain Django views answering JSON.

Reading answers 404 alike for unknown ids and for tasks the caller may not see
(:mod:`taskstore.permissions`). Submitting checks everything before anything reaches the broker.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import current_app
from django import forms
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from kombu.exceptions import OperationalError as BrokerError

from taskstore import conf
from taskstore.documents import task_document
from taskstore.models import TaskRecord
from taskstore.permissions import (
    Viewer,
    events_after,
    group_for,
    shown_group,
    shown_task,
    task_for,
)
from taskstore.rest import CSRF_FAILED, JsonValue, csrf_passes, error, first_error, methods, whole_number
from taskstore.tokens import make_token

logger = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
NOT_FOUND = "No such task, or you may not see it."
GROUP_NOT_FOUND = "No such group, or you may not see it."


class TaskListQuery(forms.Form):
    """``GET /api/tasks/``'s query: ``limit`` (1 or more, at most 500 are shown), ``state``."""

    limit = whole_number("limit", minimum=1)
    state = forms.CharField(required=False)


class EventsQuery(forms.Form):
    """``GET /api/tasks/<id>/events/``'s query: ``since``, a version (0 or more)."""

    since = whole_number("since", minimum=0)


class Submission(forms.Form):
    """A submit request's JSON body: ``{"task": NAME, "args": [...], "kwargs": {...}}``."""

    task = JsonValue(object, message="Name the task to submit.")
    args = JsonValue(list, message="'args' must be a JSON array.")
    kwargs = JsonValue(dict, message="'kwargs' must be a JSON object.")

    def clean_task(self) -> str:
        """The task's name, if it is one of the tasks that may be submitted."""
        name = self.cleaned_data.get("task")
        if not isinstance(name, str) or name not in conf.submittable_tasks():
            raise forms.ValidationError(
                f"Unknown task {name!r}: it is not one of the tasks that may be submitted."
            )
        return name

    def clean(self) -> dict[str, Any]:
        """Refuse fields the API does not read (a queue, options): nothing is silently dropped."""
        unknown = set(self.data) - set(self.fields)
        if unknown:
            raise forms.ValidationError(
                f"Unknown fields {sorted(unknown)}: only task, args and kwargs are read."
            )
        return super().clean() or {}


@csrf_exempt  # checked in submit() for session users only: anonymous API clients hold no CSRF cookie
@methods("GET", "POST")
def tasks(request: HttpRequest) -> JsonResponse:
    """``GET /api/tasks/``: tasks the caller may see; ``POST``: submit a task."""
    if request.method == "POST":
        return submit(request)
    query = TaskListQuery(request.GET)
    if not query.is_valid():
        return error(400, first_error(query))
    limit = min(query.cleaned_data["limit"] or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    viewer = Viewer.of(request.user)
    records = TaskRecord.objects.visible_to(viewer).order_by("-date_created", "-task_id")
    if query.cleaned_data["state"]:
        records = records.filter(state=query.cleaned_data["state"])
    return JsonResponse({"tasks": [shown_task(task_document(r), viewer) for r in records[:limit]]})


def submit(request: HttpRequest) -> JsonResponse:
    """Send an allowed task for the caller; answer 202 with its id and token."""
    viewer = Viewer.of(request.user)
    if viewer.anonymous and not conf.anonymous_submit():
        return error(403, "Log in to submit tasks.")
    if not viewer.anonymous and not csrf_passes(request, submit):
        return error(403, CSRF_FAILED)
    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig:
        return error(400, "The request body is too large.")
    except (ValueError, UnicodeDecodeError):
        return error(400, "The body must be JSON.")
    if not isinstance(body, dict):
        return error(400, 'The body must be a JSON object: {"task": NAME, "args": [], "kwargs": {}}.')
    form = Submission(body)
    if not form.is_valid():
        return error(400, first_error(form))
    name = form.cleaned_data["task"]
    args, kwargs = form.cleaned_data["args"] or [], form.cleaned_data["kwargs"] or {}
    try:
        # Sent inside the request, so TaskOwnerMiddleware makes the caller its owner.
        result = current_app.send_task(name, args=args, kwargs=kwargs)
    except BrokerError:
        logger.exception("Could not send task %s to the broker", name)
        return error(503, "The task queue is unavailable; try again shortly.")
    return JsonResponse({"task_id": result.id, "token": make_token(result.id)}, status=202)


@csrf_exempt  # read-only: every other method is a JSON 405, with or without a CSRF token
@methods("GET")
def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    """``GET /api/tasks/<id>/``: the task document."""
    viewer = Viewer.of(request.user)
    document = task_for(viewer, task_id, request.GET.get("token"))
    if document is None:
        return error(404, NOT_FOUND)
    return JsonResponse(shown_task(document, viewer))


@csrf_exempt  # read-only: every other method is a JSON 405, with or without a CSRF token
@methods("GET")
def task_events(request: HttpRequest, task_id: str) -> JsonResponse:
    """``GET /api/tasks/<id>/events/?since=N``: the task's documents above version N, ascending."""
    viewer = Viewer.of(request.user)
    query = EventsQuery(request.GET)
    if not query.is_valid():
        return error(400, first_error(query))
    if task_for(viewer, task_id, request.GET.get("token")) is None:
        return error(404, NOT_FOUND)
    since = query.cleaned_data["since"] or 0
    return JsonResponse({"events": [shown_task(d, viewer) for d in events_after(task_id, since)]})


@csrf_exempt  # read-only: every other method is a JSON 405, with or without a CSRF token
@methods("GET")
def group_detail(request: HttpRequest, group_id: str) -> JsonResponse:
    """``GET /api/groups/<id>/``: the group document."""
    document = group_for(Viewer.of(request.user), group_id, request.GET.get("token"))
    if document is None:
        return error(404, GROUP_NOT_FOUND)
    return JsonResponse(shown_group(document))
