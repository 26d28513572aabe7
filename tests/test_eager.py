"""With ``task_always_eager`` (how projects run tasks in their own test suites) a task records the
states it would through a worker, with and without ``task_store_eager_result``: PENDING when it
starts (no message was published), STARTED, its custom states and its end. No worker received a
message, so there is no RECEIVED."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realtime import tasks
from realtime.celery import app
from taskstore.models import TaskEvent, TaskRecord

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXAMPLES = (tasks.add, tasks.progress, tasks.fail, tasks.flaky)


@pytest.fixture(params=[False, True], ids=["results-not-stored", "task_store_eager_result"])
def store_eager_result(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Eager mode, with ``task_store_eager_result`` off and on."""
    before = {name: app.conf[name] for name in ("task_always_eager", "task_store_eager_result")}
    app.conf.update(task_always_eager=True, task_store_eager_result=request.param)
    # Tasks read their store_eager_result from the setting when they are bound, long before.
    for task in EXAMPLES:
        monkeypatch.setattr(task, "store_eager_result", request.param)
    yield request.param
    app.conf.update(before)


def _lifecycle(task_id: str) -> list[tuple[str, int]]:
    events = TaskEvent.objects.filter(task_id=task_id).order_by("version")
    return [(e.state, e.document["retries"]) for e in events]


def test_progress(store_eager_result: bool) -> None:
    result = tasks.progress.delay(3, 0)
    assert result.get() == 3
    assert _lifecycle(result.id) == [
        ("PENDING", 0), ("STARTED", 0), ("PROGRESS", 0), ("PROGRESS", 0), ("PROGRESS", 0), ("SUCCESS", 0),
    ]  # fmt: skip
    record = TaskRecord.objects.get(task_id=result.id)
    assert (record.result, record.progress, record.task_name) == (
        3,
        {"current": 3, "total": 3},
        tasks.progress.name,
    )
    assert record.args == [3, 0]
    if store_eager_result:
        assert app.AsyncResult(result.id).get(timeout=1) == 3


def test_failure(store_eager_result: bool) -> None:
    result = tasks.fail.delay("boom")
    assert result.state == "FAILURE"
    assert _lifecycle(result.id) == [("PENDING", 0), ("STARTED", 0), ("FAILURE", 0)]
    assert TaskRecord.objects.get(task_id=result.id).error == {"type": "ValueError", "message": "boom"}
    if store_eager_result:
        with pytest.raises(ValueError, match="boom"):
            app.AsyncResult(result.id).get(timeout=1)


def test_retries(store_eager_result: bool) -> None:
    result = tasks.flaky.delay(2)
    assert result.get() == "ok"
    assert _lifecycle(result.id) == [
        ("PENDING", 0), ("STARTED", 0),
        ("RETRY", 1), ("STARTED", 1),
        ("RETRY", 2), ("STARTED", 2),
        ("SUCCESS", 2),
    ]  # fmt: skip
    if store_eager_result:
        assert app.AsyncResult(result.id).get(timeout=1) == "ok"


def test_ignore_result(store_eager_result: bool) -> None:
    result = tasks.add.apply_async((2, 3), ignore_result=True)
    assert result.get() == 5
    assert _lifecycle(result.id) == [("PENDING", 0), ("STARTED", 0), ("SUCCESS", 0)]
    assert TaskRecord.objects.get(task_id=result.id).result is None


def test_a_result_json_cannot_encode(store_eager_result: bool) -> None:
    result = tasks.add.delay(b"a", b"b")
    assert _lifecycle(result.id) == [("PENDING", 0), ("STARTED", 0), ("FAILURE", 0)]
    assert TaskRecord.objects.get(task_id=result.id).error["type"] == "EncodeError"
