"""TaskClient (/static/taskstore/taskclient.js) in Chromium against a real daphne and worker:
result() resolves and rejects as the task ends, a refused subscription rejects, after the server
drops the socket the client resumes with ``since``, each version once and in order, and the
example project's old address still serves the same module."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model

from realtime import tasks
from taskstore.models import TaskEvent, TaskRecord
from taskstore.owner import owned_by
from tests.browser.support import SUBMIT_JS, Server
from tests.support.markers import IN_BROWSER
from tests.support.processes import wait_for

pytestmark = IN_BROWSER

RESULT_JS = """async ([task, args]) => {
  const {TaskClient} = await import("/static/taskstore/taskclient.js");
  const {body} = await submitTask([task, args]);
  const client = new TaskClient();
  const versions = [];
  try {
    const doc = await client.result(body.task_id, {token: body.token, onUpdate: (d) => versions.push(d.version)});
    return {resolved: doc, versions};
  } catch (error) {
    return {rejected: {name: error.name, message: error.message, state: error.state, document: error.document}, versions};
  } finally {
    client.close();
  }
}"""


def _open(page: Any, server: Server) -> None:
    page.add_init_script(f"window.submitTask = {SUBMIT_JS};")
    page.goto(server.url + "/")
    page.wait_for_function("document.cookie.includes('csrftoken=')")


def test_result_resolves_with_the_document_on_success(page: Any, server: Server) -> None:
    _open(page, server)
    outcome = page.evaluate(RESULT_JS, ["realtime.tasks.add", [2, 3]])
    doc = outcome["resolved"]
    assert doc["state"] == "SUCCESS"
    assert doc["result"] == 5
    assert doc["task_name"] == "realtime.tasks.add"
    versions = outcome["versions"]
    assert versions == sorted(set(versions)) and versions[-1] == doc["version"]
    assert TaskRecord.objects.get(task_id=doc["task_id"]).version == doc["version"]


def test_result_rejects_with_the_document_on_failure(page: Any, server: Server) -> None:
    _open(page, server)
    outcome = page.evaluate(RESULT_JS, ["realtime.tasks.fail", ["boom"]])
    assert "resolved" not in outcome
    error = outcome["rejected"]
    assert error["name"] == "TaskError"
    assert error["state"] == "FAILURE"
    assert error["document"]["error"] == {"type": "ValueError", "message": "boom"}
    assert "ValueError: boom" in error["message"]


def test_result_rejects_when_the_task_is_not_yours(page: Any, server: Server) -> None:
    someone = get_user_model().objects.create_user("someone", password="x")
    with owned_by(someone):
        theirs = tasks.add.delay(1, 1)
    wait_for(lambda: TaskRecord.objects.filter(task_id=theirs.id).exists(), 10, "their task to be recorded")
    _open(page, server)
    error = page.evaluate(
        """async (taskId) => {
          const {TaskClient} = await import("/static/taskstore/taskclient.js");
          const client = new TaskClient();
          try {
            await client.result(taskId);
            return null;
          } catch (error) {
            return {name: error.name, code: error.code};
          } finally {
            client.close();
          }
        }""",
        theirs.id,
    )
    assert error == {"name": "SubscriptionError", "code": "forbidden"}


def test_after_the_server_drops_the_socket_the_client_resumes_each_version_once(
    page: Any, server: Server
) -> None:
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))))
    _open(page, server)
    task_id = page.evaluate(
        """async () => {
          const {TaskClient} = await import("/static/taskstore/taskclient.js");
          const {body} = await submitTask(["realtime.tasks.progress", [60, 0.05]]);
          window.seen = [];
          window.states = [];
          window.client = new TaskClient();
          client.addEventListener("statechange", (e) => states.push(e.detail.state));
          client.subscribe(body.task_id, (doc) => seen.push([doc.version, doc.state]), {token: body.token});
          return body.task_id;
        }"""
    )
    page.wait_for_function("seen.some(([v, state]) => state === 'PROGRESS')")
    held = page.evaluate("seen.at(-1)[0]")

    server.restart()

    page.wait_for_function("states.includes('reconnecting') && states.at(-1) === 'open'", timeout=30_000)
    page.wait_for_function("seen.at(-1)[1] === 'SUCCESS'", timeout=30_000)
    seen = [tuple(pair) for pair in page.evaluate("seen")]
    versions = [v for v, _ in seen]
    # Each version once, in order, with no gaps, ending in SUCCESS: exactly the recorded events.
    assert versions == list(range(versions[0], versions[-1] + 1))
    assert seen[-1][1] == "SUCCESS"
    recorded = list(
        TaskEvent.objects.filter(task_id=task_id, version__gte=versions[0])
        .order_by("version")
        .values_list("version", "state")
    )
    assert seen == recorded
    # The second subscribe resumed from what the client held when the socket dropped (or later).
    subscribes = [f for f in sent if f.get("type") == "subscribe" and f.get("task_id") == task_id]
    assert "since" not in subscribes[0]
    assert len(subscribes) >= 2 and subscribes[-1]["since"] >= held
    page.evaluate("client.close()")


def test_the_old_address_re_exports_the_app_module(page: Any, server: Server) -> None:
    _open(page, server)
    outcome = page.evaluate(
        """async ([task, args]) => {
          const old = await import("/static/realtime/taskclient.js");
          const app = await import("/static/taskstore/taskclient.js");
          const names = Object.keys(app);
          const {body} = await submitTask([task, args]);
          const client = new old.TaskClient();
          try {
            const doc = await client.result(body.task_id, {token: body.token});
            return {names, oldNames: Object.keys(old), same: names.filter((n) => old[n] === app[n]), doc};
          } finally {
            client.close();
          }
        }""",
        ["realtime.tasks.add", [20, 22]],
    )
    exports = [
        "CLOSE_TOO_SLOW",
        "ERROR_STATES",
        "FeedClient",
        "SubscriptionError",
        "TERMINAL_STATES",
        "TaskClient",
        "TaskError",
        "socketUrl",
    ]
    assert sorted(outcome["names"]) == exports
    # Not copies: the very objects of the app's module, so instanceof checks hold across both.
    assert sorted(outcome["oldNames"]) == sorted(outcome["same"]) == exports
    assert outcome["doc"]["state"] == "SUCCESS" and outcome["doc"]["result"] == 42
