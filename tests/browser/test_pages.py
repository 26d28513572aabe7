"""The pages behind the browser side, through Django's test client: the demo page's CSRF cookie
and submission notice, who may open the dashboard and its data, the admin's live rows, the socket
paths the pages name (TASKSTORE_WEBSOCKET_PREFIX), and the client module at both addresses."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client
from django.utils import timezone

import taskstore
from taskstore.models import TaskRecord

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise warns that STATIC_ROOT was never collected; it serves from the apps meanwhile.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def _task(task_id: str, state: str, **fields: Any) -> TaskRecord:
    now = timezone.now()
    values = {"date_created": now, "date_updated": now, "task_name": "realtime.tasks.add", **fields}
    return TaskRecord.objects.create(task_id=task_id, state=state, version=4, **values)


@pytest.fixture
def staff_client() -> Client:
    """A client logged in as a superuser."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "x"))
    return client


@pytest.fixture
def user_client() -> Client:
    """A client logged in as a user who is not staff."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("alice", password="x"))
    return client


def test_the_demo_page_sets_the_csrf_cookie_its_script_sends_back(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert not response.cookies["csrftoken"]["httponly"]
    assert b'src="/static/realtime/demo.js"' in response.content


@pytest.mark.parametrize("anonymous_submit", [False, True])
def test_the_demo_page_says_when_anonymous_visitors_cannot_start_tasks(
    client: Client, settings: Any, anonymous_submit: bool
) -> None:
    settings.TASKSTORE_ANONYMOUS_SUBMIT = anonymous_submit
    page = client.get("/").content.decode()
    assert ("Anonymous submission is off" in page) is not anonymous_submit
    assert ("<fieldset disabled>" in page) is not anonymous_submit


def test_logged_in_users_may_always_start_tasks(user_client: Client, settings: Any) -> None:
    settings.TASKSTORE_ANONYMOUS_SUBMIT = False
    page = user_client.get("/").content.decode()
    assert "Anonymous submission is off" not in page
    assert "<fieldset disabled>" not in page


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/data/"])
def test_the_dashboard_is_for_staff(
    client: Client, user_client: Client, staff_client: Client, path: str
) -> None:
    anonymous = client.get(path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert user_client.get(path).status_code == 403
    assert staff_client.get(path).status_code == 200


def test_the_dashboard_data(staff_client: Client) -> None:
    now = timezone.now()
    _task("ok", "SUCCESS", date_done=now)
    _task("bad", "FAILURE", date_done=now, error={"type": "ValueError", "message": "boom"})
    _task("old", "FAILURE", date_done=now - timedelta(hours=2), error={"type": "KeyError", "message": "x"})
    _task("running", "PROGRESS")

    data = staff_client.get("/dashboard/data/").json()
    assert data["counts"] == {"SUCCESS": 1, "FAILURE": 2, "PROGRESS": 1}
    assert sum(data["finished_per_minute"].values()) == 2  # the two-hour-old failure is outside
    assert [f["task_id"] for f in data["failures"]] == ["bad", "old"]
    assert data["failures"][0]["error"] == {"type": "ValueError", "message": "boom"}
    assert data["failures"][0]["admin_url"] == "/admin/taskstore/taskrecord/bad/change/"
    assert data["active"] == {"running": ["PROGRESS", 4]}

    page = staff_client.get("/dashboard/").content.decode()
    assert '<script id="dashboard-data" type="application/json">' in page


def test_the_dashboard_escapes_task_data_in_its_json(staff_client: Client) -> None:
    _task("x", "FAILURE", date_done=timezone.now(), error={"type": "E", "message": "</script><b>"})
    page = staff_client.get("/dashboard/").content.decode()
    assert "</script><b>" not in page
    assert "\\u003C/script\\u003E\\u003Cb\\u003E" in page


def test_the_admin_live_rows(staff_client: Client, user_client: Client) -> None:
    owner = get_user_model().objects.create_user("carol", password="x")
    earlier = timezone.now() - timedelta(minutes=5)
    _task("shown", "STARTED", date_created=earlier, owner=owner, traceback="secret", args=[1])
    _task("new", "PENDING")
    url = "/admin/taskstore/taskrecord/live/"

    body = staff_client.get(
        url, {"id": "shown", "newer_than": (earlier + timedelta(minutes=1)).isoformat()}
    ).json()
    tasks = {t["task_id"]: t for t in body["tasks"]}
    assert set(tasks) == {"shown", "new"}
    assert tasks["shown"]["owner"] == "carol"
    assert tasks["shown"]["change_url"] == "/admin/taskstore/taskrecord/shown/change/"
    assert tasks["shown"]["state"] == "STARTED"
    assert "traceback" not in tasks["shown"] and "owner_id" not in tasks["shown"]

    assert staff_client.get(url, {"id": "shown"}).json()["tasks"][0]["task_id"] == "shown"
    assert user_client.get(url).status_code == 302  # to the admin login: not staff


def test_the_admin_is_read_only(staff_client: Client) -> None:
    _task("t1", "SUCCESS")
    assert staff_client.get("/admin/taskstore/taskrecord/add/").status_code == 403
    assert staff_client.get("/admin/taskstore/taskrecord/t1/delete/").status_code == 403
    page = staff_client.get("/admin/taskstore/taskrecord/t1/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    changed = staff_client.post("/admin/taskstore/taskrecord/t1/change/", {"state": "FAILURE"})
    assert changed.status_code == 403
    assert TaskRecord.objects.get(task_id="t1").state == "SUCCESS"
    assert staff_client.get("/admin/taskstore/grouprecord/").status_code == 200
    assert staff_client.get("/admin/taskstore/grouprecord/add/").status_code == 403


def test_the_task_list_marks_rows_for_the_live_script(staff_client: Client) -> None:
    _task("t1", "SUCCESS", progress={"current": 3, "total": 3})
    page = staff_client.get("/admin/taskstore/taskrecord/").content.decode()
    assert 'data-field="state" data-task-id="t1" data-version="4" data-state="SUCCESS"' in page
    assert '<span data-field="progress">3/3</span>' in page
    assert '<script id="taskstore-live-config" type="application/json">' in page
    assert "data-taskstore-live" in page
    # An empty (filtered) list still has the table the script adds rows to.
    empty = staff_client.get("/admin/taskstore/taskrecord/", {"state": "FAILURE"}).content.decode()
    assert 'id="result_list" data-taskstore-live' in empty


def _attribute(page: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', page)
    assert match, f"no {name} in the page"
    return match.group(1)


@pytest.mark.parametrize(
    ("prefix", "tasks", "feed"),
    [
        (None, "/ws/tasks/", "/ws/feed/"),
        ("sockets/v2/", "/sockets/v2/tasks/", "/sockets/v2/feed/"),
        ("/live", "/live/tasks/", "/live/feed/"),
        ("", "/tasks/", "/feed/"),
    ],
)
def test_the_pages_name_the_sockets_where_the_setting_routes_them(
    staff_client: Client, settings: Any, prefix: str | None, tasks: str, feed: str
) -> None:
    if prefix is not None:
        settings.TASKSTORE_WEBSOCKET_PREFIX = prefix
    admin = staff_client.get("/admin/taskstore/taskrecord/").content.decode()
    config = re.search(r'<script id="taskstore-live-config" type="application/json">(.*?)</script>', admin)
    assert config and json.loads(config.group(1))["feed_url"] == feed
    assert _attribute(staff_client.get("/").content.decode(), "data-ws-url") == tasks
    assert _attribute(staff_client.get("/dashboard/").content.decode(), "data-feed-url") == feed


def test_the_socket_tag_names_only_taskstores_sockets() -> None:
    template = Template("{% load taskstore %}{% taskstore_socket name %}")
    assert template.render(Context({"name": "tasks"})) == "/ws/tasks/"
    with pytest.raises(TemplateSyntaxError, match="one of 'tasks', 'feed', not 'chat'"):
        template.render(Context({"name": "chat"}))


@pytest.mark.parametrize("path", ["/static/taskstore/taskclient.js", "/static/realtime/taskclient.js"])
def test_the_client_module_is_served_at_both_addresses(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = b"".join(response.streaming_content).decode()
    if path.startswith("/static/realtime/"):
        # The example project's old address only points at the app's module.
        assert 'export * from "../taskstore/taskclient.js";' in body
    else:
        assert "export class FeedClient" in body


def test_the_product_has_one_socket_client() -> None:
    # The app's static files wherever taskstore is imported from (the version matrix installs it).
    static = Path(taskstore.__file__).parent / "static"
    scripts = {p.name: p.read_text() for p in static.rglob("*.js")}
    opens_sockets = {name for name, text in scripts.items() if re.search(r"new\s+[\w.]*WebSocket\s*\(", text)}
    assert opens_sockets == {"taskclient.js"}
    assert 'import {FeedClient} from "./taskclient.js";' in scripts["admin-live.js"]
