"""The REST API (docs/protocol.md, "REST"): plain Django views answering JSON.

Reading answers 404 alike for unknown ids and for tasks the caller may not see
(:mod:`taskstore.permissions`). Submitting checks everything before anything reaches the broker.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import current_app
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
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
from taskstore.tokens import make_token

logger = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
SUBMIT_FIELDS = frozenset({"task", "args", "kwargs"})
NOT_FOUND = "No such task, or you may not see it."


class BadInput(ValueError):
    """A request the API cannot act on; answered with 400 and its message."""


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """``{"error": message}`` with ``status``."""
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def not_allowed(*methods: str) -> JsonResponse:
    """405 naming the methods the resource answers."""
    return error(405, f"Use {' or '.join(methods)}.", Allow=", ".join(methods))


@csrf_exempt  # checked below for session users only: anonymous API clients hold no CSRF cookie
def tasks(request: HttpRequest) -> JsonResponse:
    """``GET /api/tasks/``: tasks the caller may see; ``POST``: submit a task."""
    if request.method == "POST":
        return submit(request)
    if request.method != "GET":
        return not_allowed("GET", "POST")
    viewer = Viewer.of(request.user)
    try:
        limit = whole_number(request.GET.get("limit"), "limit", default=DEFAULT_LIST_LIMIT, minimum=1)
    except BadInput as problem:
        return error(400, str(problem))
    limit = min(limit, MAX_LIST_LIMIT)
    if viewer.anonymous:
        return JsonResponse({"tasks": []})
    records = TaskRecord.objects.order_by("-date_created", "-task_id")
    if not viewer.staff:
        records = records.filter(owner_id=viewer.user_id)
    state = request.GET.get("state")
    if state:
        records = records.filter(state=state)
    return JsonResponse({"tasks": [shown_task(task_document(r), viewer) for r in records[:limit]]})


def submit(request: HttpRequest) -> JsonResponse:
    """Send an allowed task for the caller; answer 202 with its id and token."""
    viewer = Viewer.of(request.user)
    if viewer.anonymous and not conf.anonymous_submit():
        return error(403, "Log in to submit tasks.")
    if not viewer.anonymous:
        reason = csrf_problem(request)
        if reason is not None:
            return error(403, f"CSRF check failed: {reason}. Send the X-CSRFToken header.")
    try:
        name, args, kwargs = submission(request)
    except BadInput as problem:
        return error(400, str(problem))
    try:
        # Sent inside the request, so TaskOwnerMiddleware makes the caller its owner.
        result = current_app.send_task(name, args=args, kwargs=kwargs)
    except BrokerError:
        logger.exception("Could not send task %s to the broker", name)
        return error(503, "The task queue is unavailable; try again shortly.")
    return JsonResponse({"task_id": result.id, "token": make_token(result.id)}, status=202)


def submission(request: HttpRequest) -> tuple[str, list[Any], dict[str, Any]]:
    """The task name, args and kwargs of a submit request's JSON body, or BadInput."""
    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig:
        raise BadInput("The request body is too large.") from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput("The body must be JSON.") from None
    if not isinstance(body, dict):
        raise BadInput('The body must be a JSON object: {"task": NAME, "args": [], "kwargs": {}}.')
    unknown = set(body) - SUBMIT_FIELDS
    if unknown:
        raise BadInput(f"Unknown fields {sorted(unknown)}: only task, args and kwargs are read.")
    name, args, kwargs = body.get("task"), body.get("args", []), body.get("kwargs", {})
    if not isinstance(name, str) or name not in conf.submittable_tasks():
        raise BadInput(f"Unknown task {name!r}: it is not one of the tasks that may be submitted.")
    if not isinstance(args, list):
        raise BadInput("'args' must be a JSON array.")
    if not isinstance(kwargs, dict):
        raise BadInput("'kwargs' must be a JSON object.")
    return name, args, kwargs


def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    """``GET /api/tasks/<id>/``: the task document."""
    if request.method != "GET":
        return not_allowed("GET")
    viewer = Viewer.of(request.user)
    document = task_for(viewer, task_id, request.GET.get("token"))
    if document is None:
        return error(404, NOT_FOUND)
    return JsonResponse(shown_task(document, viewer))


def task_events(request: HttpRequest, task_id: str) -> JsonResponse:
    """``GET /api/tasks/<id>/events/?since=N``: the task's documents above version N, ascending."""
    if request.method != "GET":
        return not_allowed("GET")
    viewer = Viewer.of(request.user)
    try:
        since = whole_number(request.GET.get("since"), "since", default=0, minimum=0)
    except BadInput as problem:
        return error(400, str(problem))
    if task_for(viewer, task_id, request.GET.get("token")) is None:
        return error(404, NOT_FOUND)
    return JsonResponse({"events": [shown_task(d, viewer) for d in events_after(task_id, since)]})


def group_detail(request: HttpRequest, group_id: str) -> JsonResponse:
    """``GET /api/groups/<id>/``: the group document."""
    if request.method != "GET":
        return not_allowed("GET")
    document = group_for(Viewer.of(request.user), group_id, request.GET.get("token"))
    if document is None:
        return error(404, "No such group, or you may not see it.")
    return JsonResponse(shown_group(document))


def whole_number(raw: str | None, name: str, default: int, minimum: int) -> int:
    """A query parameter as a whole number of at least ``minimum``, or BadInput."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"'{name}' must be a whole number.") from None
    if value < minimum:
        raise BadInput(f"'{name}' must be at least {minimum}.")
    return value


class _CsrfCheck(CsrfViewMiddleware):
    # Give back the failure reason instead of rendering Django's HTML failure page.
    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def csrf_problem(request: HttpRequest) -> str | None:
    """Why the request fails Django's CSRF check, or None when it passes."""
    check = _CsrfCheck(lambda r: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})
