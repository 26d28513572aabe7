"""The recorder: one conditional write per transition, published only after the commit."""

from __future__ import annotations

from unittest import mock
from uuid import uuid4

import pytest
from django.db import transaction

from taskstore import addressing
from taskstore.models import TaskEvent, TaskRecord
from taskstore.publisher import publisher
from taskstore.recorder import Transition, record

pytestmark = pytest.mark.django_db(transaction=True)


def _tid() -> str:
    return f"t-{uuid4()}"


def _states(task_id: str) -> list[tuple[int, str]]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("version").values_list("version", "state"))


def test_versions_count_up_from_one() -> None:
    task_id = _tid()
    for state in ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]:
        record(Transition(task_id=task_id, state=state, result=5 if state == "SUCCESS" else None))
    assert _states(task_id) == [(1, "PENDING"), (2, "RECEIVED"), (3, "STARTED"), (4, "SUCCESS")]
    row = TaskRecord.objects.get(task_id=task_id)
    assert (row.state, row.version, row.result) == ("SUCCESS", 4, 5)


@pytest.mark.parametrize(
    ("first", "late"),
    [
        (["STARTED", "PROGRESS"], "STARTED"),
        (["STARTED"], "RECEIVED"),
        (["RECEIVED"], "PENDING"),
        (["SUCCESS"], "STARTED"),
        (["SUCCESS"], "FAILURE"),
        (["FAILURE"], "PROGRESS"),
        (["REVOKED"], "SUCCESS"),
    ],
)
def test_a_transition_back_in_the_lifecycle_is_refused(first: list[str], late: str) -> None:
    task_id = _tid()
    for state in first:
        assert record(Transition(task_id=task_id, state=state, progress={"n": 1})) is not None
    with mock.patch.object(publisher, "publish") as publish:
        assert record(Transition(task_id=task_id, state=late, progress={"n": 2})) is None
    assert [s for _, s in _states(task_id)] == first
    publish.assert_not_called()


def test_the_same_transition_twice_is_recorded_once() -> None:
    task_id = _tid()
    assert record(Transition(task_id=task_id, state="STARTED")) is not None
    assert record(Transition(task_id=task_id, state="STARTED")) is None
    assert record(Transition(task_id=task_id, state="PROGRESS", progress={"current": 1})) is not None
    assert record(Transition(task_id=task_id, state="PROGRESS", progress={"current": 1})) is None
    assert record(Transition(task_id=task_id, state="PROGRESS", progress={"current": 2})) is not None
    assert [s for _, s in _states(task_id)] == ["STARTED", "PROGRESS", "PROGRESS"]


def test_a_retry_opens_a_new_attempt() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="STARTED", attempt=0))
    record(Transition(task_id=task_id, state="RETRY", attempt=1, error={"type": "E", "message": "m"}))
    # A late RETRY of the same attempt and a late STARTED of the old attempt are refused.
    assert record(Transition(task_id=task_id, state="RETRY", attempt=1)) is None
    assert record(Transition(task_id=task_id, state="STARTED", attempt=0)) is None
    assert record(Transition(task_id=task_id, state="STARTED", attempt=1)) is not None
    row = TaskRecord.objects.get(task_id=task_id)
    assert (row.state, row.retries, row.error) == ("STARTED", 1, None)


def test_a_rolled_back_write_publishes_nothing() -> None:
    task_id = _tid()
    with (
        mock.patch.object(publisher, "publish") as publish,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        assert record(Transition(task_id=task_id, state="PENDING")) is not None
        raise RuntimeError("roll back")
    assert not TaskRecord.objects.filter(task_id=task_id).exists()
    publish.assert_not_called()


def test_publishing_waits_for_the_outer_commit() -> None:
    task_id = _tid()
    with mock.patch.object(publisher, "publish") as publish:
        with transaction.atomic():
            record(Transition(task_id=task_id, state="PENDING"))
            publish.assert_not_called()
        publish.assert_called_once()
    [message] = [m for g, m in publish.call_args.args[0] if g == addressing.task_group(task_id)]
    assert message["document"]["state"] == "PENDING"


def test_unencodable_result_becomes_a_failure() -> None:
    task_id = _tid()
    doc = record(Transition(task_id=task_id, state="SUCCESS", result={1, 2}))
    assert doc is not None
    assert doc["state"] == "FAILURE"
    assert doc["error"]["type"] == "EncodeError"


def test_progress_is_kept_after_success() -> None:
    task_id = _tid()
    record(Transition(task_id=task_id, state="PROGRESS", progress={"current": 3, "total": 3}))
    doc = record(Transition(task_id=task_id, state="SUCCESS", result=3))
    assert doc is not None
    assert doc["progress"] == {"current": 3, "total": 3}


def test_group_members_bump_the_group_version() -> None:
    group_id = f"g-{uuid4()}"
    for n in range(3):
        record(Transition(task_id=f"{group_id}-{n}", state="PENDING", group_id=group_id))
    from taskstore.groups import group_document
    from taskstore.models import GroupRecord

    group = GroupRecord.objects.get(group_id=group_id)
    doc = group_document(group)
    assert (doc["version"], doc["total"], doc["counts"], doc["state"]) == (3, 3, {"PENDING": 3}, "PENDING")
    for n in range(3):
        record(Transition(task_id=f"{group_id}-{n}", state="SUCCESS", result=n))
    doc = group_document(GroupRecord.objects.get(group_id=group_id))
    assert (doc["version"], doc["completed"], doc["state"], doc["results"]) == (6, 3, "SUCCESS", [0, 1, 2])


def test_saving_a_group_pushes_its_exact_total() -> None:
    from taskstore.recorder import record_group_members

    group_id = f"g-{uuid4()}"
    members = [f"{group_id}-{n}" for n in range(3)]
    for n, task_id in enumerate(members[:2]):
        record(Transition(task_id=task_id, state="SUCCESS", result=n, group_id=group_id))
    # Two members recorded, both done: until the group is saved, that is all it knows.
    with mock.patch.object(publisher, "publish") as publish:
        record_group_members(group_id, members)
    [(group, message)] = publish.call_args.args[0]
    assert group == addressing.group_channel_group(group_id)
    document = message["document"]
    assert (document["version"], document["total"], document["completed"], document["state"]) == (
        3, 3, 2, "STARTED",
    )  # fmt: skip
    with mock.patch.object(publisher, "publish") as publish:
        record_group_members(group_id, None)
    assert publish.call_args.args[0][0][1]["document"]["total"] == 2


def test_the_event_document_is_the_task_document_as_of_that_version() -> None:
    from taskstore.documents import task_document

    task_id = _tid()
    record(Transition(task_id=task_id, state="PENDING", args=[1, "<b>"], kwargs={"k": None}, owner_id=None))
    record(Transition(task_id=task_id, state="STARTED", worker="w@h"))
    last = record(
        Transition(task_id=task_id, state="FAILURE", error={"type": "E", "message": "m"}, traceback="tb")
    )
    event = TaskEvent.objects.get(task_id=task_id, version=3)
    assert event.document == last == task_document(TaskRecord.objects.get(task_id=task_id))
    assert event.document["date_started"].endswith("Z") and event.document["traceback"] == "tb"


def test_a_write_that_carries_an_earlier_time_does_not_move_date_updated_back() -> None:
    # Each write takes its time before it waits for the row's lock, so the write that waited can
    # carry the earlier time: two group members' touches race, and so may two processes' writes
    # of one task. Feeds read "changed since" by date_updated, and it must never go back.
    from datetime import timedelta

    from django.utils import timezone

    from taskstore.models import GroupRecord

    task_id, group_id = _tid(), f"g-{uuid4()}"
    later = timezone.now()
    earlier = later - timedelta(seconds=5)
    for now, state in ((later, "PENDING"), (earlier, "RECEIVED")):
        with (
            mock.patch("taskstore.recorder.timezone.now", return_value=now),
            mock.patch("taskstore.groups.timezone.now", return_value=now),
        ):
            assert record(Transition(task_id=task_id, state=state, group_id=group_id)) is not None
    task = TaskRecord.objects.get(task_id=task_id)
    group = GroupRecord.objects.get(group_id=group_id)
    assert (task.version, task.state, task.date_updated) == (2, "RECEIVED", later)
    assert (group.version, group.date_updated) == (2, later)
