"""Owners (the request's user, or named in code) and signed per-id tokens."""

from __future__ import annotations

import time
from unittest import mock
from uuid import uuid4

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from taskstore.middleware import TaskOwnerMiddleware
from taskstore.models import TaskRecord
from taskstore.owner import current_owner_id, owned_by
from taskstore.signals import on_publish
from taskstore.tokens import check_token, make_token


def _publish(task_id: str) -> dict:
    headers = {"id": task_id, "task": "realtime.tasks.add", "retries": 0}
    on_publish(sender="realtime.tasks.add", body=([1, 2], {}, {}), headers=headers)
    return headers


@pytest.mark.django_db(transaction=True)
def test_the_request_user_owns_tasks_sent_while_it_is_handled() -> None:
    user = User.objects.create_user("owner")
    task_id = str(uuid4())
    seen: dict[str, object] = {}

    def view(request: object) -> HttpResponse:
        seen["headers"] = _publish(task_id)
        return HttpResponse()

    request = RequestFactory().get("/")
    request.user = user
    TaskOwnerMiddleware(view)(request)
    assert TaskRecord.objects.get(task_id=task_id).owner_id == user.pk
    # The owner travels with the message, so tasks the task sends belong to the same user.
    assert seen["headers"]["taskstore_owner"] == user.pk
    assert current_owner_id() is None


@pytest.mark.django_db(transaction=True)
async def test_the_middleware_serves_async_stacks_too() -> None:
    async def view(request: object) -> HttpResponse:
        return HttpResponse(str(current_owner_id()))

    middleware = TaskOwnerMiddleware(view)
    request = RequestFactory().get("/")
    request.user = User(pk=7)
    request.user.is_active = True
    response = await middleware(request)
    assert response.content == b"7"


@pytest.mark.django_db(transaction=True)
def test_anonymous_requests_own_nothing_and_code_can_name_an_owner() -> None:
    user = User.objects.create_user("named")
    with owned_by(AnonymousUser()):
        anonymous = str(uuid4())
        _publish(anonymous)
    with owned_by(user):
        named = str(uuid4())
        _publish(named)
    assert TaskRecord.objects.get(task_id=anonymous).owner_id is None
    assert TaskRecord.objects.get(task_id=named).owner_id == user.pk


def test_a_token_opens_its_own_id_only() -> None:
    token = make_token("task-a")
    assert check_token("task-a", token)
    assert not check_token("task-b", token)
    assert not check_token("task-a", token[:-2] + "xx")
    assert not check_token("task-a", "")
    assert not check_token("task-a", None)
    # Task and group tokens are not interchangeable.
    assert not check_token("task-a", token, kind="group")
    assert check_token("g", make_token("g", kind="group"), kind="group")


@override_settings(TASKSTORE_TOKEN_MAX_AGE=60)
def test_a_token_expires() -> None:
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 61):
        old = make_token("task-a")
    assert not check_token("task-a", old)
    assert check_token("task-a", make_token("task-a"))


def test_a_running_task_passes_its_owner_on() -> None:
    # Celery's current task (celery.current_task): what it sends belongs to the owner its own
    # message carried; outside a task there is none.
    from celery import Celery

    app = Celery("owner-test", set_as_current=False)

    @app.task
    def owner_seen() -> int | None:
        return current_owner_id()

    assert owner_seen.apply(headers={"taskstore_owner": 7}).get() == 7
    assert owner_seen.apply().get() is None
    assert current_owner_id() is None
