"""One rule for which tasks a viewer may see without a token: ``TaskRecord.objects.visible_to``,
and its in-memory twin ``may_see_owned`` for documents the feed already holds."""

from __future__ import annotations

from uuid import uuid4

import pytest
from django.contrib.auth.models import User

from taskstore.models import TaskRecord
from taskstore.permissions import Viewer, may_see_owned
from taskstore.recorder import Transition, record

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def task_of(owner: User | None) -> str:
    task_id = str(uuid4())
    record(Transition(task_id=task_id, state="PENDING", owner_id=owner.pk if owner else None))
    return task_id


def test_staff_see_all_users_their_own_anonymous_nothing() -> None:
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    staff = User.objects.create_user("staff", is_staff=True)
    retired = User.objects.create_user("retired", is_staff=True, is_active=False)
    alices, bobs, nobodys = task_of(alice), task_of(bob), task_of(None)
    every = {alices, bobs, nobodys}

    def visible(user: User | None) -> set[str]:
        return set(TaskRecord.objects.visible_to(Viewer.of(user)).values_list("task_id", flat=True))

    assert visible(staff) == every
    assert visible(alice) == {alices}
    assert visible(bob) == {bobs}
    assert visible(None) == set()
    # An inactive staff account is an ordinary user (Viewer.of): it owns nothing here.
    assert visible(retired) == set()


def test_the_queryset_and_the_document_check_agree() -> None:
    owners = [User.objects.create_user(f"user{i}") for i in range(2)]
    staff = User.objects.create_user("staff", is_staff=True)
    for owner in [*owners, None]:
        task_of(owner)
    rows = list(TaskRecord.objects.values_list("task_id", "owner_id"))
    for user in [*owners, staff, None]:
        viewer = Viewer.of(user)
        listed = set(TaskRecord.objects.visible_to(viewer).values_list("task_id", flat=True))
        assert listed == {task_id for task_id, owner_id in rows if may_see_owned(viewer, owner_id)}


def test_it_chains_like_any_queryset() -> None:
    alice = User.objects.create_user("alice")
    mine = task_of(alice)
    record(Transition(task_id=mine, state="STARTED"))
    task_of(alice)
    started = TaskRecord.objects.filter(state="STARTED").visible_to(Viewer.of(alice))
    assert list(started.values_list("task_id", flat=True)) == [mine]
