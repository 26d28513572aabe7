"""The REST API in-process: who sees what, bad input, CSRF, and nothing sent to the broker
unless the request is good."""

from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock
from uuid import uuid4

import pytest
from celery import current_app
from django.contrib.auth.models import User
from django.test import Client

from taskstore.owner import current_owner_id
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token
from tests.support import records

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    # WhiteNoise warns when collectstatic has not run; these tests serve no static files.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

STAFF_FIELDS = {"traceback", "args", "kwargs"}


@pytest.fixture
def users() -> dict[str, User | None]:
    return {
        "owner": User.objects.create_user("owner"),
        "other": User.objects.create_user("other"),
        "staff": User.objects.create_user("staff", is_staff=True),
        "anonymous": None,
    }


def client_for(user: User | None, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def failed_task(owner: User | None, group_id: str | None = None) -> str:
    """A failed task of ``owner`` (tests.support.records)."""
    return records.failed_task(owner.pk if owner else None, group_id)


def expired_token(task_id: str) -> str:
    eight_days_ago = time.time() - 8 * 24 * 3600
    with mock.patch("django.core.signing.time.time", return_value=eight_days_ago):
        return make_token(task_id)


TOKENS = {
    None: lambda task_id: None,
    "valid": make_token,
    "other id": lambda task_id: make_token(str(uuid4())),
    "expired": expired_token,
    "forged": lambda task_id: make_token(task_id)[:-4] + "AAAA",
    "group kind": lambda task_id: make_token(task_id, kind="group"),
}

# (viewer, token) -> whether the task shows, and with staff fields.
MATRIX = [
    ("owner", None, True, False),
    ("other", None, False, False),
    ("staff", None, True, True),
    ("anonymous", None, False, False),
    ("anonymous", "valid", True, False),
    ("other", "valid", True, False),
    ("anonymous", "other id", False, False),
    ("anonymous", "expired", False, False),
    ("anonymous", "forged", False, False),
    ("anonymous", "group kind", False, False),
]


@pytest.mark.parametrize(("viewer", "token", "shown", "staff_fields"), MATRIX)
def test_who_sees_a_task(
    users: dict[str, Any], viewer: str, token: str | None, shown: bool, staff_fields: bool
) -> None:
    task_id = failed_task(users["owner"])
    client = client_for(users[viewer])
    query = {"token": TOKENS[token](task_id)} if token else {}
    detail = client.get(f"/api/tasks/{task_id}/", query)
    events = client.get(f"/api/tasks/{task_id}/events/", query)
    if not shown:
        # Exactly what an id nobody recorded gets.
        unknown_id = str(uuid4())
        unknown_query = {"token": TOKENS[token](unknown_id)} if token and token != "valid" else {}
        for response, path in ((detail, ""), (events, "events/")):
            unknown = client.get(f"/api/tasks/{unknown_id}/{path}", unknown_query)
            assert (response.status_code, response.json()) == (404, unknown.json())
            assert unknown.status_code == 404
        return
    document = detail.json()
    assert detail.status_code == 200
    assert (document["state"], document["version"]) == ("FAILURE", 3)
    assert document["error"] == {"type": "ValueError", "message": "boom"}
    assert "owner_id" not in document
    assert [e["version"] for e in events.json()["events"]] == [1, 2, 3]
    for shown_document in [document, *events.json()["events"]]:
        assert (set(shown_document) >= STAFF_FIELDS) is staff_fields
        assert not (STAFF_FIELDS & set(shown_document)) or staff_fields
    if staff_fields:
        assert "ValueError: boom" in document["traceback"]
        assert (document["args"], document["kwargs"]) == (["secret"], {"k": 1})
    assert "secret" not in detail.content.decode() or staff_fields


@pytest.mark.parametrize(
    ("viewer", "token", "status"),
    [("staff", None, 200), ("anonymous", "valid", 200), ("owner", None, 404), ("anonymous", None, 404)],
)
def test_an_unrecorded_id_is_pending_version_0_for_staff_and_token_holders(
    users: dict[str, Any], viewer: str, token: str | None, status: int
) -> None:
    task_id = str(uuid4())
    query = {"token": make_token(task_id)} if token else {}
    response = client_for(users[viewer]).get(f"/api/tasks/{task_id}/", query)
    assert response.status_code == status
    if status == 200:
        assert (response.json()["state"], response.json()["version"]) == ("PENDING", 0)
        assert client_for(users[viewer]).get(f"/api/tasks/{task_id}/events/", query).json() == {"events": []}


def test_events_since(users: dict[str, Any]) -> None:
    task_id = failed_task(users["owner"])
    client = client_for(users["owner"])
    assert [e["version"] for e in client.get(f"/api/tasks/{task_id}/events/?since=1").json()["events"]] == [
        2,
        3,
    ]
    assert client.get(f"/api/tasks/{task_id}/events/?since=3").json() == {"events": []}
    for bad in ("x", "-1", "1.5"):
        response = client.get(f"/api/tasks/{task_id}/events/", {"since": bad})
        assert response.status_code == 400
        assert "since" in response.json()["error"]


def test_the_list_shows_what_you_may_see_newest_first(users: dict[str, Any]) -> None:
    first, second = failed_task(users["owner"]), failed_task(users["owner"])
    theirs = failed_task(users["other"])
    record(Transition(task_id=second, state="PENDING"))  # refused: nothing changes
    owner_list = client_for(users["owner"]).get("/api/tasks/").json()["tasks"]
    assert [t["task_id"] for t in owner_list] == [second, first]
    assert all(not (STAFF_FIELDS & set(t)) and "owner_id" not in t for t in owner_list)
    staff_list = client_for(users["staff"]).get("/api/tasks/?state=FAILURE").json()["tasks"]
    assert [t["task_id"] for t in staff_list] == [theirs, second, first]
    assert all(set(t) >= STAFF_FIELDS for t in staff_list)
    assert client_for(users["staff"]).get("/api/tasks/?state=SUCCESS").json() == {"tasks": []}
    assert [t["task_id"] for t in client_for(users["staff"]).get("/api/tasks/?limit=1").json()["tasks"]] == [
        theirs
    ]
    assert client_for(None).get("/api/tasks/").json() == {"tasks": []}
    assert client_for(users["owner"]).get("/api/tasks/?limit=0").status_code == 400
    assert client_for(users["owner"]).get("/api/tasks/?limit=ten").status_code == 400


@pytest.mark.parametrize(
    ("viewer", "token", "status"),
    [
        ("owner", None, 200),
        ("staff", None, 200),
        ("other", None, 404),
        ("anonymous", "group", 200),
        ("anonymous", "task", 404),
        ("anonymous", None, 404),
    ],
)
def test_who_sees_a_group(users: dict[str, Any], viewer: str, token: str | None, status: int) -> None:
    group_id = str(uuid4())
    failed_task(users["owner"], group_id=group_id)
    query = {"token": make_token(group_id, kind=token)} if token else {}
    response = client_for(users[viewer]).get(f"/api/groups/{group_id}/", query)
    assert response.status_code == status
    if status == 200:
        document = response.json()
        assert (document["group_id"], document["total"], document["completed"]) == (group_id, 1, 1)
        assert (document["state"], document["counts"]) == ("FAILURE", {"FAILURE": 1})
        assert "owner_id" not in document
    else:
        assert response.json() == client_for(users[viewer]).get("/api/groups/nope/", query).json()


# --- submitting ------------------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What reached the broker (send_task replaced), with the owner in force at the time."""
    calls: list[dict[str, Any]] = []

    def send_task(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        calls.append({"name": name, "args": args, "kwargs": kwargs, "owner": current_owner_id()})
        return mock.Mock(id=str(uuid4()))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return calls


def csrf_client(user: User) -> tuple[Client, str]:
    client = client_for(user, enforce_csrf_checks=True)
    login_page = client.get("/accounts/login/")
    assert login_page.status_code == 200
    return client, client.cookies["csrftoken"].value


def post(client: Client, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/tasks/", data, content_type="application/json", headers=headers)


def test_a_logged_in_user_submits_with_csrf_and_owns_the_task(users: dict[str, Any], sent: list[Any]) -> None:
    client, csrf = csrf_client(users["owner"])
    response = post(client, {"task": "realtime.tasks.add", "args": [2, 3]}, X_CSRFToken=csrf)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"task_id", "token"}
    assert sent == [{"name": "realtime.tasks.add", "args": [2, 3], "kwargs": {}, "owner": users["owner"].pk}]
    assert client_for(None).get(f"/api/tasks/{body['task_id']}/", {"token": body["token"]}).status_code == 200


def test_a_session_without_the_csrf_token_is_refused(users: dict[str, Any], sent: list[Any]) -> None:
    client, _ = csrf_client(users["owner"])
    response = post(client, {"task": "realtime.tasks.add", "args": [2, 3]})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "CSRF" in response.json()["error"]
    forged = post(client, {"task": "realtime.tasks.add", "args": [2, 3]}, X_CSRFToken="x" * 32)
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    assert sent == []


def test_anonymous_submission_only_when_allowed(settings: Any, sent: list[Any]) -> None:
    anonymous = Client(enforce_csrf_checks=True)
    assert post(anonymous, {"task": "realtime.tasks.add", "args": [1, 1]}).status_code == 403
    assert sent == []
    settings.TASKSTORE_ANONYMOUS_SUBMIT = True
    response = post(anonymous, {"task": "realtime.tasks.add", "args": [1, 1]})
    assert response.status_code == 202
    assert sent == [{"name": "realtime.tasks.add", "args": [1, 1], "kwargs": {}, "owner": None}]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        b"\xff\xfe",
        "",
        [1, 2],
        {"args": [1, 2]},
        {"task": "realtime.tasks.nope"},
        {"task": "os.system", "args": ["rm -rf /"]},
        {"task": 5},
        {"task": "realtime.tasks.add", "args": {"x": 1}},
        {"task": "realtime.tasks.add", "args": "1,2"},
        {"task": "realtime.tasks.add", "kwargs": [1]},
        {"task": "realtime.tasks.add", "args": [1, 2], "queue": "other"},
    ],
)
def test_bad_submissions_get_400_and_send_nothing(users: dict[str, Any], sent: list[Any], body: Any) -> None:
    client, csrf = csrf_client(users["owner"])
    response = post(client, body, X_CSRFToken=csrf)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert sent == []


def test_other_methods_get_405(users: dict[str, Any]) -> None:
    client = client_for(users["owner"])
    response = client.put("/api/tasks/")
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"
    assert response.json() == {"error": "Use GET or POST."}
    for path in (f"/api/tasks/{uuid4()}/", f"/api/tasks/{uuid4()}/events/", f"/api/groups/{uuid4()}/"):
        refused = client.post(path)
        assert (refused.status_code, refused["Allow"], refused.json()) == (405, "GET", {"error": "Use GET."})


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/api/tasks/", {"limit": "0"}, "'limit' must be at least 1."),
        ("/api/tasks/", {"limit": "ten"}, "'limit' must be a whole number."),
        ("/api/tasks/", {"state": "SUCCESS\x00"}, "Null characters are not allowed."),
        ("/api/tasks/{task_id}/events/", {"since": "-1"}, "'since' must be at least 0."),
    ],
)
def test_bad_query_parameters_get_400_saying_which(
    users: dict[str, Any], path: str, query: dict[str, str], message: str
) -> None:
    task_id = failed_task(users["owner"])
    response = client_for(users["owner"]).get(path.format(task_id=task_id), query)
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_the_login_page_renders_a_plain_form() -> None:
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert b'<form method="post"' in page.content
    assert b'name="username"' in page.content and b'name="csrfmiddlewaretoken"' in page.content
