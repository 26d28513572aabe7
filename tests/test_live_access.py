"""Who sees what, over a real daphne: the authorisation matrix on REST and WebSocket alike, the
origin check at the handshake, the feeds, and submitting through the API to a real worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from unittest import mock
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime import tasks
from taskstore.owner import owned_by
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token
from tests.live.client import http, off_loop, session_cookie, websocket
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, daphne

pytestmark = REAL_SERVICES

STAFF_FIELDS = {"traceback", "args", "kwargs"}
SECRET = "the-secret-argument"


@pytest.fixture(scope="module")
def port(service_env: dict[str, str]) -> Iterator[int]:
    proc: ManagedProcess
    proc, port = daphne(service_env)
    yield port
    proc.stop()


@pytest.fixture
def people() -> dict[str, str | None]:
    """Session ids of the owner, another user and a staff user; None for anonymous."""
    return {
        "owner": session_cookie(User.objects.create_user("owner")),
        "other": session_cookie(User.objects.create_user("other")),
        "staff": session_cookie(User.objects.create_user("staff", is_staff=True)),
        "anonymous": None,
    }


def failed_task(owner_name: str = "owner") -> str:
    """A task of ``owner_name`` that failed, with a traceback and arguments only staff may see."""
    task_id = str(uuid4())
    owner = User.objects.get(username=owner_name)
    name = "realtime.tasks.fail"
    record(
        Transition(
            task_id=task_id,
            state="PENDING",
            task_name=name,
            owner_id=owner.pk,
            args=[SECRET],
            kwargs={"why": SECRET},
        )
    )
    record(
        Transition(
            task_id=task_id,
            state="FAILURE",
            task_name=name,
            error={"type": "ValueError", "message": "boom"},
            traceback=f"Traceback (most recent call last):\nValueError: {SECRET}",
        )
    )
    return task_id


def expired_token(task_id: str) -> str:
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 8 * 24 * 3600):
        return make_token(task_id)


TOKENS = {
    "no token": lambda task_id: None,
    "valid token": make_token,
    "token for another id": lambda task_id: make_token(str(uuid4())),
    "expired token": expired_token,
    "forged token": lambda task_id: "AAAAAA:" + make_token(task_id).split(":")[-1][::-1],
}

# (viewer, token, shown, with staff fields)
MATRIX = [
    ("owner", "no token", True, False),
    ("other", "no token", False, False),
    ("staff", "no token", True, True),
    ("anonymous", "no token", False, False),
    ("anonymous", "valid token", True, False),
    ("other", "valid token", True, False),
    ("anonymous", "token for another id", False, False),
    ("anonymous", "expired token", False, False),
    ("anonymous", "forged token", False, False),
    ("other", "forged token", False, False),
]


async def ws_answer(port: int, cookie: str | None, task_id: str, token: str | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "task_id": task_id}
    if token is not None:
        frame["token"] = token
    async with websocket(port, cookie=cookie) as socket:
        await socket.send(frame)
        answer = await socket.receive()
        await socket.still_serving()
    return answer


def rest_answer(port: int, cookie: str | None, path: str, token: str | None) -> tuple[int, Any]:
    query = f"?token={token}" if token is not None else ""
    return http(port, "GET", f"{path}{query}", cookies={"sessionid": cookie} if cookie else None)


@pytest.mark.parametrize(("viewer", "token_kind", "shown", "staff_fields"), MATRIX)
async def test_the_authorisation_matrix_on_rest_and_websocket(
    port: int, people: dict[str, Any], viewer: str, token_kind: str, shown: bool, staff_fields: bool
) -> None:
    task_id = await off_loop(failed_task)
    unknown_id = str(uuid4())
    cookie = people[viewer]
    token = TOKENS[token_kind](task_id)
    # An unknown id with a token of the same kind (a valid token for one id opens no other).
    unknown_token = None if token_kind == "no token" else TOKENS["token for another id"](unknown_id)

    answer = await ws_answer(port, cookie, task_id, token)
    detail = await off_loop(rest_answer, port, cookie, f"/api/tasks/{task_id}/", token)
    events = await off_loop(rest_answer, port, cookie, f"/api/tasks/{task_id}/events/", token)
    if not shown:
        unknown_answer = await ws_answer(port, cookie, unknown_id, unknown_token)
        assert answer == {**unknown_answer, "task_id": task_id}
        assert answer["code"] == "forbidden"
        for status_body, path in ((detail, ""), (events, "events/")):
            unknown = await off_loop(
                rest_answer, port, cookie, f"/api/tasks/{unknown_id}/{path}", unknown_token
            )
            assert status_body == unknown
            assert status_body[0] == 404
        return
    assert detail[0] == events[0] == 200
    documents = [answer, detail[1], *events[1]["events"]]
    assert answer["type"] == "task.update"
    assert [d["state"] for d in documents] == ["FAILURE", "FAILURE", "PENDING", "FAILURE"]
    assert all(
        d["error"] == {"type": "ValueError", "message": "boom"} for d in documents if d["state"] == "FAILURE"
    )
    for document in documents:
        assert "owner_id" not in document
        if staff_fields:
            assert set(document) >= STAFF_FIELDS
        else:
            assert not set(document) & STAFF_FIELDS
            assert SECRET not in str(document)
    if staff_fields:
        assert SECRET in detail[1]["traceback"]
        assert detail[1]["args"] == [SECRET]


@pytest.mark.parametrize(("viewer", "token_kind"), [("staff", "no token"), ("anonymous", "valid token")])
async def test_staff_and_token_holders_see_an_unrecorded_id_as_pending(
    port: int, people: dict[str, Any], viewer: str, token_kind: str
) -> None:
    task_id = str(uuid4())
    token = TOKENS[token_kind](task_id)
    answer = await ws_answer(port, people[viewer], task_id, token)
    status, body = await off_loop(rest_answer, port, people[viewer], f"/api/tasks/{task_id}/", token)
    assert (answer["state"], answer["version"]) == ("PENDING", 0)
    assert (status, body["state"], body["version"]) == (200, "PENDING", 0)


async def test_a_foreign_origin_is_refused_at_the_handshake(port: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websocket(port, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        async with websocket(port, path="/ws/feed/", origin="null"):
            pass


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:8000", "https://localhost"])
async def test_no_origin_or_an_allowed_one_is_accepted(port: int, origin: str | None) -> None:
    async with websocket(port, origin=origin) as socket:
        await socket.still_serving()


async def test_each_feed_shows_what_its_user_may_see(worker: Any, port: int, people: dict[str, Any]) -> None:
    owner, other = await off_loop(
        lambda: (User.objects.get(username="owner"), User.objects.get(username="other"))
    )

    def send_for(user: User) -> str:
        with owned_by(user):
            return tasks.add.delay(1, 2).id

    async with (
        websocket(port, path="/ws/feed/", cookie=people["staff"]) as staff_feed,
        websocket(port, path="/ws/feed/", cookie=people["owner"]) as owner_feed,
    ):
        await staff_feed.still_serving(pushes_may_come_first=True)
        await owner_feed.still_serving()
        mine = await off_loop(send_for, owner)
        theirs = await off_loop(send_for, other)
        finished: set[str] = set()

        def both_finished(frame: dict[str, Any]) -> bool:
            if frame["type"] == "task.update" and frame["state"] == "SUCCESS":
                finished.add(frame["task_id"])
            return finished == {mine, theirs}

        # A staff feed also carries the operations console's frames (a worker another test
        # started coming online, a queue's depth): the task frames are the ones to judge.
        seen_by_staff = [f for f in await staff_feed.until(both_finished) if f["type"] == "task.update"]
        seen_by_owner = await owner_feed.until(lambda f: f["task_id"] == mine and f["state"] == "SUCCESS")
        await owner_feed.still_serving()  # and nothing of the other user's task after it
    for task_id in (mine, theirs):
        assert [f["version"] for f in seen_by_staff if f["task_id"] == task_id] == [1, 2, 3, 4]
    assert [(f["task_id"], f["version"]) for f in seen_by_owner] == [(mine, v) for v in (1, 2, 3, 4)]
    assert all(set(f) >= STAFF_FIELDS for f in seen_by_staff)
    assert all(not set(f) & STAFF_FIELDS for f in seen_by_owner)


async def test_an_anonymous_feed_is_closed_with_4401(port: int) -> None:
    async with websocket(port, path="/ws/feed/") as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await socket.receive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_submitting_through_the_api_runs_the_task_for_its_owner(
    worker: Any, port: int, people: dict[str, Any]
) -> None:
    cookie = people["owner"]
    csrf = await off_loop(csrf_cookie, port)
    cookies = {"sessionid": cookie, "csrftoken": csrf}
    refused = await off_loop(
        http, port, "POST", "/api/tasks/", {"task": "realtime.tasks.add", "args": [2, 3]}, cookies
    )
    assert refused[0] == 403
    status, body = await off_loop(
        http,
        port,
        "POST",
        "/api/tasks/",
        {"task": "realtime.tasks.add", "args": [2, 3]},
        cookies,
        {"X-CSRFToken": csrf, "Referer": f"http://127.0.0.1:{port}/"},
    )
    assert status == 202
    task_id = body["task_id"]
    async with websocket(port, cookie=cookie) as socket:
        await socket.send({"type": "subscribe", "task_id": task_id, "since": 0})
        frames = await socket.until_terminal(task_id)
    assert [(f["version"], f["state"]) for f in frames] == [
        (1, "PENDING"),
        (2, "RECEIVED"),
        (3, "STARTED"),
        (4, "SUCCESS"),
    ]
    assert frames[-1]["result"] == 5
    # The owner sees it; the token alone opens it; another user learns nothing.
    assert (await off_loop(rest_answer, port, cookie, f"/api/tasks/{task_id}/", None))[1]["result"] == 5
    assert (await off_loop(rest_answer, port, None, f"/api/tasks/{task_id}/", body["token"]))[0] == 200
    assert (await off_loop(rest_answer, port, people["other"], f"/api/tasks/{task_id}/", None))[0] == 404
    listed = await off_loop(rest_answer, port, cookie, "/api/tasks/?state=SUCCESS", None)
    assert [t["task_id"] for t in listed[1]["tasks"]] == [task_id]


def csrf_cookie(port: int) -> str:
    """The csrftoken cookie daphne sets with the login form."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name == "csrftoken":
                return rest.split(";", 1)[0]
    raise AssertionError("no csrftoken cookie on the login page")


async def test_a_group_is_pushed_and_served_to_its_owner(
    worker: Any, port: int, people: dict[str, Any]
) -> None:
    from celery import group

    owner = await off_loop(User.objects.get, username="owner")

    def start() -> tuple[str, Any]:
        job = group(tasks.add.s(i, i) for i in range(3))
        frozen = job.freeze()
        return frozen.id, job

    group_id, job = await off_loop(start)
    async with websocket(port, cookie=people["owner"]) as socket:
        await socket.send({"type": "subscribe", "group_id": group_id})
        first = await socket.receive()
        assert first["code"] == "forbidden"  # not recorded yet, and the owner holds no token

    token = make_token(group_id, kind="group")
    async with websocket(port) as socket:
        await socket.send({"type": "subscribe", "group_id": group_id, "token": token})
        assert (await socket.receive())["version"] == 0

        def send() -> None:
            with owned_by(owner):
                job.apply_async().save()

        await off_loop(send)
        # Until the group is saved its total counts the members recorded so far (it may look
        # done at 2 of 3); the save makes it exact and pushes the document again.
        frames = await socket.until(lambda f: f.get("state") == "SUCCESS" and f.get("total") == 3)
    assert all(f["type"] == "group.update" and f["group_id"] == group_id for f in frames)
    versions = [f["version"] for f in frames]
    assert versions == sorted(set(versions))
    assert (frames[-1]["completed"], frames[-1]["results"]) == (3, [0, 2, 4])
    status, body = await off_loop(rest_answer, port, people["owner"], f"/api/groups/{group_id}/", None)
    assert (status, body["state"], body["results"]) == (200, "SUCCESS", [0, 2, 4])
    assert (await off_loop(rest_answer, port, people["other"], f"/api/groups/{group_id}/", None))[0] == 404
