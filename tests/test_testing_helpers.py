"""taskstore.testing used the way a project's own tests would: eager tasks, recorded documents,
and a subscription through Channels' WebsocketCommunicator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import override_settings

from realtime.celery import app
from realtime.tasks import add, fail, progress
from taskstore import owned_by
from taskstore.testing import recorded_documents, subscription
from taskstore.tokens import make_token

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def eager() -> Iterator[None]:
    """CELERY_TASK_ALWAYS_EAGER, as a project's test settings would set it."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.mark.django_db
def test_recorded_documents_of_an_eager_task(eager: None) -> None:
    with recorded_documents() as documents:
        result = progress.delay(3, delay=0)
    assert [d["task_id"] for d in documents] == [result.id] * len(documents)
    assert [d["state"] for d in documents] == [
        "PENDING",
        "STARTED",
        "PROGRESS",
        "PROGRESS",
        "PROGRESS",
        "SUCCESS",
    ]
    assert [d["version"] for d in documents] == [1, 2, 3, 4, 5, 6]
    assert [d["progress"] for d in documents[2:5]] == [{"current": n, "total": 3} for n in (1, 2, 3)]
    assert documents[-1]["result"] == 3


@pytest.mark.django_db
def test_recorded_documents_of_one_task_only(eager: None) -> None:
    with recorded_documents(task_id="mine") as documents:
        add.delay(1, 1)
        fail.apply_async(("boom",), task_id="mine")
    assert [d["state"] for d in documents] == ["PENDING", "STARTED", "FAILURE"]
    assert documents[-1]["error"] == {"type": "ValueError", "message": "boom"}


@pytest.mark.django_db(transaction=True)
@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_subscription_sees_every_version_of_an_eager_task(eager: None) -> None:
    user = await database_sync_to_async(User.objects.create_user)("carol")
    task_id = str(uuid.uuid4())

    def send() -> None:
        with owned_by(user):
            add.apply_async((2, 3), task_id=task_id)

    async with subscription(task_id, token=make_token(task_id)) as watched:
        first = await watched.next_frame()
        assert (first["state"], first["version"]) == ("PENDING", 0)
        await database_sync_to_async(send)()
        documents = await watched.until_done()
    assert [(d["state"], d["version"]) for d in documents] == [("PENDING", 1), ("STARTED", 2), ("SUCCESS", 3)]
    assert documents[-1]["result"] == 5

    # The owner sees it too, without a token, from the version it names.
    async with subscription(task_id, user=user, since=1) as replay:
        assert [d["version"] for d in await replay.until_done()] == [2, 3]


@pytest.mark.django_db(transaction=True)
@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_subscription_to_a_task_the_user_may_not_see_fails_clearly() -> None:
    stranger = await database_sync_to_async(User.objects.create_user)("dave")
    async with subscription("not-theirs", user=stranger) as watched:
        with pytest.raises(AssertionError, match="forbidden"):
            await watched.until_done()
