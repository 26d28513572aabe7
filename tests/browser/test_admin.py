"""The live admin and the staff dashboard in Chromium: a task started elsewhere appears in the open
task list and its state cell changes without a reload, through the app's shared taskclient.js; the
list stops for good when the server closes its feed with 4401; the revoke action; the dashboard's
numbers move live; and who may not open any of it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from playwright.sync_api import expect

from realtime import tasks
from taskstore.models import ControlAction, TaskRecord
from taskstore.owner import owned_by
from tests.browser.support import Server, log_in, screenshot
from tests.support.markers import IN_BROWSER
from tests.support.processes import wait_for

pytestmark = IN_BROWSER

TASK_LIST = "/admin/taskstore/taskrecord/"

# Records every state the state cell of a task shows, from the moment its row appears.
WATCH_STATE = """(taskId) => {
  window.statesShown = [];
  const note = () => {
    const cell = document.querySelector(`[data-field=state][data-task-id="${taskId}"]`);
    if (cell && cell.textContent !== statesShown.at(-1)) statesShown.push(cell.textContent);
  };
  new MutationObserver(note).observe(document.getElementById("result_list"), {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture
def staff(context: Any, server: Server) -> Any:
    """A superuser, logged in in the test's browser context."""
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "x")
    log_in(context, server, user)
    return user


def _open_task_list(page: Any, server: Server) -> None:
    page.goto(server.url + TASK_LIST)
    expect(page.locator("#taskstore-live-status")).to_have_attribute("data-state", "open")
    # Marks this document: a reload would lose it.
    page.evaluate("window.sameDocument = true")


def test_a_task_started_elsewhere_appears_and_its_state_changes_live(
    page: Any, server: Server, staff: Any
) -> None:
    earlier = tasks.add.delay(1, 1)
    wait_for(
        lambda: TaskRecord.objects.filter(task_id=earlier.id, state="SUCCESS").exists(), 20, "earlier task"
    )
    scripts: list[tuple[str, int]] = []
    sockets: list[str] = []
    page.on("response", lambda r: scripts.append((urlsplit(r.url).path, r.status)))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    _open_task_list(page, server)
    # The list runs on the app's own client module, the one the pages use: one socket, the feed.
    assert ("/static/taskstore/admin-live.js", 200) in scripts
    assert ("/static/taskstore/taskclient.js", 200) in scripts
    assert sockets == [f"ws://127.0.0.1:{server.port}/ws/feed/"]
    expect(page.locator(f'[data-field=state][data-task-id="{earlier.id}"]')).to_have_text("SUCCESS")

    task_id = str(uuid.uuid4())
    page.evaluate(WATCH_STATE, task_id)
    tasks.progress.apply_async((20, 0.1), task_id=task_id)

    state = page.locator(f'[data-field=state][data-task-id="{task_id}"]')
    expect(state).to_be_visible()
    row = page.locator("#result_list tbody tr").first
    expect(row).to_have_attribute("data-task-id", task_id)  # new tasks go on top
    expect(state).to_have_text("SUCCESS", timeout=30_000)

    record = TaskRecord.objects.get(task_id=task_id)
    expect(row.locator("[data-field=version]")).to_have_text(str(record.version))
    expect(row.locator("[data-field=progress]")).to_have_text("20/20")
    expect(row.locator("[data-field=worker]")).to_have_text(record.worker)
    expect(row.locator("th a")).to_have_text(task_id)
    shown = page.evaluate("statesShown")
    assert shown[-1] == "SUCCESS"
    assert "PROGRESS" in shown, shown  # the cell changed while the task ran, not only at the end
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#result_list tbody tr").count() == 2
    assert len(sockets) == 1
    screenshot(page, "admin-live-list")


def test_a_task_that_ran_while_the_feed_was_down_appears_after_the_reconnect(
    page: Any, server: Server, staff: Any
) -> None:
    _open_task_list(page, server)
    server.stop()
    expect(page.locator("#taskstore-live-status")).to_have_attribute("data-state", "reconnecting")
    missed = tasks.add.delay(20, 22)
    wait_for(lambda: TaskRecord.objects.filter(task_id=missed.id, state="SUCCESS").exists(), 20, "the task")
    server.start()

    # The feed does not replay: the list asks the admin for what it missed once it is back.
    expect(page.locator("#taskstore-live-status")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(page.locator(f'[data-field=state][data-task-id="{missed.id}"]')).to_have_text("SUCCESS")
    assert page.evaluate("window.sameDocument") is True


def test_the_list_stops_for_good_when_the_feed_is_closed_with_4401(
    page: Any, context: Any, server: Server, staff: Any
) -> None:
    _open_task_list(page, server)
    status = page.locator("#taskstore-live-status")
    server.stop()
    expect(status).to_have_attribute("data-state", "reconnecting")
    # The session ends while the server is away: the feed refuses the reconnect with 4401.
    cookie = next(c for c in context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME)
    assert Session.objects.filter(session_key=cookie["value"]).delete()[0] == 1
    server.start()

    # Only a close code trying again cannot help (4401, 4403) ends in "closed"; any other drop
    # goes back to "reconnecting".
    expect(status).to_have_attribute("data-state", "closed", timeout=30_000)
    expect(status).to_have_text("Not live: reload the page to try again")
    assert page.evaluate("window.sameDocument") is True


def test_revoke_selected_tasks(page: Any, server: Server, staff: Any) -> None:
    done = tasks.add.delay(1, 2)
    # A queue no worker consumes: the task waits, PENDING, until revoked.
    waiting = tasks.sleep.apply_async((30,), queue="nobody-consumes-this")
    wait_for(lambda: TaskRecord.objects.filter(task_id=waiting.id).exists(), 10, "the task's PENDING")
    wait_for(lambda: TaskRecord.objects.filter(task_id=done.id, state="SUCCESS").exists(), 20, "add")
    _open_task_list(page, server)
    state = page.locator(f'[data-field=state][data-task-id="{waiting.id}"]')
    expect(state).to_have_text("PENDING")

    page.locator(f'input.action-select[value="{waiting.id}"]').check()
    page.locator(f'input.action-select[value="{done.id}"]').check()
    page.locator("select[name=action]").select_option("revoke_selected")
    # The action asks to confirm first (admin-confirm.js): say yes, and note the question where
    # it outlives the form's submission.
    page.evaluate("window.confirm = (question) => { sessionStorage.asked = question; return true; }")
    page.get_by_role("button", name="Go").click()

    expect(page.locator(".messagelist")).to_have_text(
        "Revoked 1 task. 1 had already ended and kept its state."
    )
    expect(page.locator(f'[data-field=state][data-task-id="{waiting.id}"]')).to_have_text("REVOKED")
    expect(page.locator(f'[data-field=state][data-task-id="{done.id}"]')).to_have_text("SUCCESS")
    assert TaskRecord.objects.get(task_id=waiting.id).state == "REVOKED"
    assert page.evaluate("sessionStorage.asked") == "Revoke the selected tasks? (2 selected)"
    recorded = ControlAction.objects.get(action="revoke", target=waiting.id)
    assert recorded.username == "boss"
    assert TaskRecord.objects.get(task_id=done.id).state == "SUCCESS"


def test_the_task_list_is_read_only(page: Any, server: Server, staff: Any) -> None:
    done = tasks.add.delay(2, 2)
    wait_for(lambda: TaskRecord.objects.filter(task_id=done.id, state="SUCCESS").exists(), 20, "the task")
    _open_task_list(page, server)
    assert page.locator("select[name=action] option").all_inner_texts() == [
        "---------",
        "Revoke selected tasks",
        "Terminate selected running tasks",
        "Re-run selected finished tasks",
    ]
    page.locator("#result_list tbody th a").first.click()
    expect(page.locator("h1")).to_contain_text("View task")
    assert page.locator("input[name=state], textarea[name=result]").count() == 0
    assert page.locator("input[type=submit][name=_save]").count() == 0
    expect(page.locator(".field-result")).to_contain_text("4")


def test_the_dashboard_moves_live(page: Any, server: Server, staff: Any) -> None:
    page.goto(server.url + "/dashboard/")
    expect(page.locator("#transport")).to_have_attribute("data-state", "open")
    failures_before = int(page.locator('#counts [data-state="FAILURE"] dd').inner_text())
    finished_before = int(page.locator("#chart").get_attribute("data-total"))
    page.evaluate("window.sameDocument = true")

    failed = tasks.fail.delay("dashboard boom")

    first = page.locator("#failures tbody tr").first
    expect(first).to_have_attribute("data-task-id", failed.id)
    expect(first.locator(".error")).to_have_text("ValueError: dashboard boom")
    expect(page.locator('#counts [data-state="FAILURE"] dd')).to_have_text(str(failures_before + 1))
    expect(page.locator("#chart")).to_have_attribute("data-total", str(finished_before + 1))
    expect(page.locator("#chart rect.bar")).not_to_have_count(0)
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "dashboard")


def iso_millis(stamp: str) -> str:
    """A server time as JavaScript's ``toISOString()`` writes it (milliseconds, Z)."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (
        moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def test_a_refresh_answered_late_keeps_what_the_feed_delivered_meanwhile(
    page: Any, server: Server, staff: Any
) -> None:
    """The dashboard takes its data afresh each time the feed (re)opens. An answer that left the
    server before a failure, arriving after the feed delivered it, must not take it away."""
    held: list[tuple[Any, Any]] = []

    def hold(route: Any) -> None:
        held.append((route, route.fetch()))  # the data as it is now, answered later

    page.route("**/dashboard/data/**", hold)
    page.goto(server.url + "/dashboard/")
    page.evaluate("window.sameDocument = true")
    expect(page.locator("#transport")).to_have_attribute("data-state", "open")
    wait_for(lambda: page.evaluate("1") == 1 and len(held) == 1, 15, "the refresh the open feed asks for")

    failed = tasks.fail.delay("late refresh")
    row = page.locator(f'#failures tbody tr[data-task-id="{failed.id}"]')
    expect(row.locator(".error")).to_have_text("ValueError: late refresh")

    route, stale = held[0]
    taken = stale.json()["now"]
    route.fulfill(response=stale)
    # Rendered from the late answer (the data's time is its), with the failure still listed.
    expect(page.locator("#dashboard")).to_have_attribute("data-taken", iso_millis(taken))
    expect(row.locator(".error")).to_have_text("ValueError: late refresh")
    assert page.evaluate("window.sameDocument") is True


def test_anonymous_feed_sockets_are_closed_with_4401(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    code = page.evaluate(
        """() => new Promise((resolve) => {
          const socket = new WebSocket(`ws://${location.host}/ws/feed/`);
          socket.onclose = (event) => resolve(event.code);
        })"""
    )
    assert code == 4401


def test_non_staff_users_get_neither_admin_nor_dashboard_and_only_their_own_feed(
    page: Any, server: Server, context: Any
) -> None:
    users = get_user_model().objects
    alice, bob = users.create_user("alice", password="x"), users.create_user("bob", password="x")
    log_in(context, server, alice)

    page.goto(server.url + TASK_LIST)
    expect(page).to_have_url(f"{server.url}/admin/login/?next={TASK_LIST}")
    response = page.goto(server.url + "/dashboard/")
    assert response is not None and response.status == 403
    response = page.goto(server.url + "/dashboard/data/")
    assert response is not None and response.status == 403

    page.goto(server.url + "/")
    page.evaluate(
        """() => new Promise((resolve) => {
          window.feed = [];
          const socket = new WebSocket(`ws://${location.host}/ws/feed/`);
          socket.onopen = resolve;
          socket.onmessage = (event) => feed.push(JSON.parse(event.data));
        })"""
    )
    with owned_by(bob):
        bobs = tasks.add.delay(1, 2)
    with owned_by(alice):
        alices = tasks.add.delay(3, 4)
    page.wait_for_function(
        "(id) => feed.some((f) => f.task_id === id && f.state === 'SUCCESS')", arg=alices.id, timeout=20_000
    )
    wait_for(lambda: TaskRecord.objects.filter(task_id=bobs.id, state="SUCCESS").exists(), 20, "bob's task")
    seen = {frame.get("task_id") for frame in page.evaluate("feed")}
    assert alices.id in seen
    assert bobs.id not in seen
