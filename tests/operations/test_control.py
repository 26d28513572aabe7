"""Control, staff only: terminate, re-run, purge and revoke over REST and the staff feed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from realtime import tasks
from taskstore.models import ControlAction, QueueRecord, TaskRecord, WorkerRecord
from tests.live.client import http, session_cookie, websocket
from tests.operations.support import fast_env, hostname_of, queue_name, start_worker
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, wait_for
from tests.test_live_access import csrf_cookie

pytestmark = REAL_SERVICES

QUEUE = queue_name("control")
IDLE_QUEUE = queue_name("control-idle")  # nobody consumes it


@pytest.fixture(scope="module")
def env(service_env: dict[str, str]) -> dict[str, str]:
    return fast_env(service_env, TASKSTORE_WATCH_QUEUES=IDLE_QUEUE)


@pytest.fixture(scope="module")
def ops_worker(env: dict[str, str]) -> Iterator[ManagedProcess]:
    proc = start_worker(env, "ts11-control", QUEUE, concurrency=2)
    yield proc
    proc.stop()


def as_user(port: int, staff: bool) -> dict[str, str]:
    """Cookies of a new (staff or plain) user, CSRF token included."""
    user = User.objects.create_user(f"{'staff' if staff else 'plain'}-{User.objects.count()}", is_staff=staff)
    return {"sessionid": session_cookie(user), "csrftoken": csrf_cookie(port)}


def act(port: int, cookies: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    """POST /api/ops/actions/ as a browser would (CSRF header and Referer)."""
    headers = {"X-CSRFToken": cookies.get("csrftoken", ""), "Referer": f"http://127.0.0.1:{port}/"}
    return http(port, "POST", "/api/ops/actions/", body, cookies, headers)


def task(task_id: str) -> TaskRecord | None:
    return TaskRecord.objects.filter(task_id=task_id).first()


def test_terminate_ends_a_running_task_as_revoked_and_the_worker_stays_up(
    port: int, ops_worker: ManagedProcess
) -> None:
    staff = as_user(port, staff=True)
    running = tasks.sleep.apply_async((60,), queue=QUEUE)
    wait_for(lambda: (t := task(running.id)) and t.state == "STARTED", 20, "the task to start")

    status, body = act(port, staff, {"action": "terminate", "task_id": running.id})

    assert status == 200, body
    assert body["action"] == "terminate" and body["ok"] is True and body["user"].startswith("staff-")
    ended = wait_for(lambda: (t := task(running.id)) and t.state == "REVOKED" and t, 10, "REVOKED")
    assert ended.error == {"type": "TaskRevokedError", "message": "terminated"}
    assert ops_worker.alive()
    assert tasks.add.apply_async((20, 22), queue=QUEUE).get(timeout=20) == 42
    hostname = hostname_of("ts11-control")
    assert WorkerRecord.objects.get(hostname=hostname).status == WorkerRecord.ONLINE
    assert ControlAction.objects.filter(action="terminate", target=running.id).count() == 1
    # A finished task cannot be terminated: 409 and nothing recorded.
    assert act(port, staff, {"action": "terminate", "task_id": running.id})[0] == 409
    assert ControlAction.objects.filter(action="terminate", target=running.id).count() == 1


def test_rerun_sends_a_new_task_with_the_same_arguments_and_the_parent_link(
    port: int, ops_worker: ManagedProcess, worker: ManagedProcess
) -> None:
    staff = as_user(port, staff=True)
    first = tasks.add.apply_async((2, 3), queue=QUEUE)
    assert first.get(timeout=20) == 5
    wait_for(lambda: (t := task(first.id)) and t.state == "SUCCESS", 10, "SUCCESS recorded")
    # The re-run goes where the task's routes send it (the default queue here, which the
    # suite's worker consumes), not to the queue the first run was sent to by hand.
    status, body = act(port, staff, {"action": "rerun", "task_id": first.id})
    assert status == 200, body
    new_id = body["detail"]["new_task_id"]
    assert new_id != first.id
    again = wait_for(lambda: task(new_id), 10, "the new task recorded")
    assert again.task_name == "realtime.tasks.add"
    assert again.args == [2, 3] and again.kwargs == {}
    assert again.parent_id == first.id
    done = wait_for(lambda: (t := task(new_id)) and t.state == "SUCCESS" and t, 20, "the re-run to succeed")
    assert done.result == 5


def test_purge_empties_a_queue_and_is_recorded_on_the_staff_feed(port: int) -> None:
    staff = as_user(port, staff=True)
    sent = [tasks.add.apply_async((i, i), queue=IDLE_QUEUE).id for i in range(4)]
    wait_for(lambda: QueueRecord.objects.filter(name=IDLE_QUEUE, depth=4).exists(), 15, "depth 4")

    async def purge_watching_the_feed() -> list[dict[str, Any]]:
        async with websocket(port, "/ws/feed/", cookie=staff["sessionid"]) as feed:
            status, body = await asyncio.to_thread(act, port, staff, {"action": "purge", "queue": IDLE_QUEUE})
            assert status == 200, body
            assert body["detail"] == {"purged": 4}
            return await feed.until(
                lambda f: (
                    f.get("type") == "action.recorded"
                    and f["action"] == "purge"
                    and f["target"] == IDLE_QUEUE
                )
            )

    frames = asyncio.run(purge_watching_the_feed())
    assert frames[-1]["detail"] == {"purged": 4}
    wait_for(lambda: QueueRecord.objects.filter(name=IDLE_QUEUE, depth=0).exists(), 15, "depth 0")
    assert TaskRecord.objects.filter(task_id__in=sent).count() == 4


def test_staff_control_over_the_feed_socket(port: int) -> None:
    staff = as_user(port, staff=True)
    waiting = tasks.add.apply_async((1, 1), queue=IDLE_QUEUE)

    async def revoke() -> list[dict[str, Any]]:
        async with websocket(port, "/ws/feed/", cookie=staff["sessionid"]) as feed:
            await feed.send({"type": "control", "action": "revoke", "task_id": waiting.id})
            frames = await feed.until(
                lambda f: f.get("type") == "action.recorded" and f["target"] == waiting.id
            )
            await feed.send({"type": "control", "action": "terminate", "task_id": waiting.id})
            frames += await feed.until(lambda f: f.get("type") == "error")
            return frames

    frames = asyncio.run(revoke())
    assert frames[-1]["code"] == "conflict"
    assert task(waiting.id).state == "REVOKED"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "revoke", "task_id": "some-task"},
        {"action": "terminate", "task_id": "some-task"},
        {"action": "rerun", "task_id": "some-task"},
        {"action": "purge", "queue": IDLE_QUEUE},
    ],
    ids=lambda b: b["action"],
)
def test_anyone_but_staff_is_forbidden_each_action(port: int, body: dict[str, Any]) -> None:
    plain = as_user(port, staff=False)
    before = ControlAction.objects.count()
    assert act(port, plain, body)[0] == 403
    assert act(port, {"csrftoken": plain["csrftoken"]}, body)[0] == 403  # anonymous

    async def over_the_socket() -> dict[str, Any]:
        async with websocket(port, "/ws/feed/", cookie=plain["sessionid"]) as feed:
            await feed.send({"type": "control", **body})
            return await feed.receive()

    assert asyncio.run(over_the_socket())["code"] == "forbidden"
    assert ControlAction.objects.count() == before


def test_bad_action_requests_are_answered_400(port: int) -> None:
    staff = as_user(port, staff=True)
    assert act(port, staff, {"action": "explode", "task_id": "x"})[0] == 400
    assert act(port, staff, {"action": "purge"})[0] == 400
    assert act(port, staff, {"action": "revoke", "task_id": "x", "extra": 1})[0] == 400
    assert act(port, staff, {"action": "purge", "queue": "nobody-knows-this-queue"})[0] == 409
