"""TaskClient's own promises, in Chromium with a scripted socket (no server): each version once
and in order, resubscribing with ``since`` after a drop, backoff with jitter, shared
subscriptions, refusals, pings, and a permanent close."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import watch
from tests.support.processes import ROOT

pytestmark = pytest.mark.browser

ORIGIN = "https://client.test"
MODULE = ROOT / "taskstore" / "static" / "taskstore" / "taskclient.js"

# A WebSocket stand-in the test drives: open(), push(frame), drop(code).
FAKE_SOCKET = """
window.sockets = [];
window.FakeSocket = class {
  constructor(url) { this.url = url; this.sent = []; this.readyState = 0; this.createdAt = Date.now(); sockets.push(this); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1000) { this.readyState = 3; this.closedWith = code; }
  open() { this.readyState = 1; this.onopen?.({}); }
  push(frame) { this.onmessage?.({data: JSON.stringify(frame)}); }
  drop(code = 1006) { this.readyState = 3; this.droppedAt = Date.now(); this.onclose?.({code}); }
};
window.doc = (version, state = "STARTED", id = "t1") => ({type: "task.update", task_id: id, version, state, result: null, error: null});
"""


@pytest.fixture
def page(context: Any, page_problems: list[str]) -> Iterator[Any]:
    """A page on a made-up https origin that serves taskclient.js from the working tree."""
    new = watch(context.new_page(), page_problems)

    def serve(route: Any) -> None:
        if route.request.url.endswith("/taskclient.js"):
            route.fulfill(body=MODULE.read_text(), content_type="text/javascript")
        else:
            route.fulfill(body="<!doctype html><title>client</title>", content_type="text/html")

    new.route(f"{ORIGIN}/**", serve)
    new.goto(f"{ORIGIN}/page/")
    new.evaluate(FAKE_SOCKET)
    new.evaluate(
        """async () => {
          window.tc = await import("/static/taskstore/taskclient.js");
          window.make = (options = {}) => new tc.TaskClient({WebSocket: FakeSocket, initialDelay: 40, ...options});
        }"""
    )
    yield new
    assert not page_problems, page_problems


def test_the_url_follows_the_page_with_wss_under_https(page: Any) -> None:
    assert page.evaluate("make().connection.url") == "wss://client.test/ws/tasks/"
    assert page.evaluate("make({url: 'ws://other:9000/x/'}).connection.url") == "ws://other:9000/x/"
    assert page.evaluate("tc.socketUrl('/ws/feed/', 'http://h:8000/a')") == "ws://h:8000/ws/feed/"


def test_each_version_is_delivered_once_and_in_order(page: Any) -> None:
    seen = page.evaluate(
        """() => {
          const client = make();
          const seen = [];
          client.subscribe("t1", (d) => seen.push(d.version));
          const s = sockets[0];
          s.open();
          for (const v of [1, 2, 2, 1, 3, 3, 5]) s.push(doc(v));
          s.push(doc(9, "SUCCESS", "someone-else"));
          return seen;
        }"""
    )
    assert seen == [1, 2, 3, 5]


def test_after_a_drop_it_reconnects_with_backoff_and_resubscribes_with_since(page: Any) -> None:
    page.evaluate(
        """() => {
          window.client = make();
          window.seen = [];
          window.states = [];
          client.addEventListener("statechange", (e) => states.push(e.detail.state));
          client.subscribe("t1", (d) => seen.push(d.version), {token: "tok"});
          client.subscribeGroup("g1", (g) => seen.push("g" + g.version));
          sockets[0].open();
          sockets[0].push(doc(1));
          sockets[0].push(doc(2));
          sockets[0].push({type: "group.update", group_id: "g1", version: 1});
          sockets[0].drop();
        }"""
    )
    page.wait_for_function("sockets.length === 2")
    delay = page.evaluate("sockets[1].createdAt - sockets[0].droppedAt")
    # Equal jitter: between half and all of the first delay (40 ms), give or take the timer.
    assert 15 <= delay <= 200
    frames = page.evaluate(
        """() => {
          sockets[1].open();
          // The server replays from since=2; a repeated version 2 is dropped.
          for (const v of [2, 3, 4]) sockets[1].push(doc(v));
          sockets[1].push({type: "group.update", group_id: "g1", version: 1});
          sockets[1].push({type: "group.update", group_id: "g1", version: 2});
          return sockets[1].sent;
        }"""
    )
    assert {"type": "subscribe", "task_id": "t1", "token": "tok", "since": 2} in frames
    assert {"type": "subscribe", "group_id": "g1"} in frames
    assert page.evaluate("seen") == [1, 2, "g1", 3, 4, "g2"]
    assert page.evaluate("states") == ["open", "reconnecting", "open"]


def test_the_backoff_grows_while_the_server_stays_away(page: Any) -> None:
    page.evaluate("window.client = make({initialDelay: 20}); sockets[0].drop()")
    for n in range(1, 5):
        page.wait_for_function(f"sockets.length === {n + 1}")
        page.evaluate(f"sockets[{n}].drop()")
    gaps = page.evaluate("sockets.slice(1).map((s, i) => s.createdAt - sockets[i].droppedAt)")
    # Attempt n waits between 20*2^n/2 and 20*2^n ms.
    for n, gap in enumerate(gaps):
        assert 20 * 2**n / 2 - 5 <= gap <= 20 * 2**n + 100, gaps
    assert gaps[-1] > gaps[0]


def test_listeners_share_one_subscription(page: Any) -> None:
    result = page.evaluate(
        """async () => {
          const client = make();
          const a = [], b = [];
          sockets[0].open();
          const stopA = client.subscribe("t1", (d) => a.push(d.version));
          sockets[0].push(doc(1));
          const stopB = client.subscribe("t1", (d) => b.push(d.version));
          await Promise.resolve();
          sockets[0].push(doc(2));
          stopA();
          const afterA = sockets[0].sent.length;
          stopB();
          return {a, b, sent: sockets[0].sent, afterA};
        }"""
    )
    assert result["a"] == [1, 2]
    assert result["b"] == [1, 2]  # the late listener starts from the current document
    subscribes = [f for f in result["sent"] if f["type"] == "subscribe"]
    assert subscribes == [{"type": "subscribe", "task_id": "t1"}]
    # Unsubscribed only once the last listener stopped.
    assert result["sent"][result["afterA"] :] == [{"type": "unsubscribe", "task_id": "t1"}]


def test_result_settles_on_terminal_states_and_refusals(page: Any) -> None:
    outcome = page.evaluate(
        """async () => {
          const client = make();
          sockets[0].open();
          const ok = client.result("a");
          const failed = client.result("b").catch((e) => e);
          const revoked = client.result("c").catch((e) => e);
          const refused = client.result("d").catch((e) => e);
          sockets[0].push(doc(1, "STARTED", "a"));
          sockets[0].push({...doc(2, "SUCCESS", "a"), result: 5});
          sockets[0].push({...doc(4, "FAILURE", "b"), error: {type: "ValueError", message: "boom"}});
          sockets[0].push({...doc(2, "REVOKED", "c"), error: {type: "TaskRevokedError", message: "revoked"}});
          sockets[0].push({type: "error", code: "forbidden", detail: "no", task_id: "d"});
          const [o, f, r, x] = await Promise.all([ok, failed, revoked, refused]);
          return {
            ok: o.result,
            failed: [f.name, f.state, f.document.error.message],
            revoked: [r.name, r.state],
            refused: [x.name, x.code],
            left: client.subscriptions.size,
            unsubscribed: sockets[0].sent.filter((f) => f.type === "unsubscribe").map((f) => f.task_id),
          };
        }"""
    )
    assert outcome["ok"] == 5
    assert outcome["failed"] == ["TaskError", "FAILURE", "boom"]
    assert outcome["revoked"] == ["TaskError", "REVOKED"]
    assert outcome["refused"] == ["SubscriptionError", "forbidden"]
    assert outcome["left"] == 0
    assert sorted(outcome["unsubscribed"]) == ["a", "b", "c"]


def test_a_truncated_result_is_fetched_whole_over_rest(page: Any) -> None:
    page.route(
        f"{ORIGIN}/api/tasks/big/?token=tok",
        lambda route: route.fulfill(
            json={"task_id": "big", "state": "SUCCESS", "version": 4, "result": "x" * 10}
        ),
    )
    doc = page.evaluate(
        """async () => {
          const client = make();
          sockets[0].open();
          const pending = client.result("big", {token: "tok"});
          sockets[0].push({...doc(4, "SUCCESS", "big"), result: null, result_truncated: true});
          return await pending;
        }"""
    )
    assert doc["result"] == "x" * 10


def test_a_permanent_close_stops_reconnecting_and_rejects(page: Any) -> None:
    outcome = page.evaluate(
        """async () => {
          const client = make();
          const states = [];
          client.addEventListener("statechange", (e) => states.push([e.detail.state, e.detail.code]));
          sockets[0].open();
          const pending = client.result("t1").catch((e) => [e.name, e.code]);
          sockets[0].drop(4401);
          await new Promise((resolve) => setTimeout(resolve, 200));
          return {error: await pending, states, sockets: sockets.length};
        }"""
    )
    assert outcome["error"] == ["SubscriptionError", "closed"]
    assert outcome["states"][-1] == ["closed", 4401]
    assert outcome["sockets"] == 1


def test_closed_as_too_slow_it_reconnects_and_resumes_with_since(page: Any) -> None:
    page.evaluate(
        """() => {
          window.seen = [];
          window.states = [];
          const client = make();
          client.addEventListener("statechange", (e) => states.push([e.detail.state, e.detail.code]));
          client.subscribe("t1", (d) => seen.push(d.version));
          sockets[0].open();
          for (const v of [1, 2, 3]) sockets[0].push(doc(v));
          sockets[0].drop(tc.CLOSE_TOO_SLOW);
        }"""
    )
    page.wait_for_function("sockets.length === 2")
    sent = page.evaluate(
        """() => {
          sockets[1].open();
          for (const v of [4, 5]) sockets[1].push(doc(v, v === 5 ? "SUCCESS" : "STARTED"));
          return sockets[1].sent;
        }"""
    )
    assert page.evaluate("tc.CLOSE_TOO_SLOW") == 4408
    assert {"type": "subscribe", "task_id": "t1", "since": 3} in sent
    assert page.evaluate("seen") == [1, 2, 3, 4, 5]
    assert page.evaluate("states") == [["open", None], ["reconnecting", 4408], ["open", None]]


def test_it_pings_when_quiet_and_replaces_a_socket_that_stopped_answering(page: Any) -> None:
    page.evaluate(
        """() => {
          window.client = make({pingInterval: 100, pongTimeout: 150});
          client.subscribe("t1", () => {});
          sockets[0].open();
        }"""
    )
    # The liveness check runs every min(pingInterval, 5 s): here every 100 ms.
    page.wait_for_function("sockets[0].sent.some((f) => f.type === 'ping')")
    page.wait_for_function("sockets.length === 2", timeout=5_000)
    assert page.evaluate("sockets[0].closedWith") == 1000
    assert page.evaluate("client.state") in ("reconnecting", "connecting")
    page.evaluate("sockets[1].open()")
    assert page.evaluate("sockets[1].sent") == [{"type": "subscribe", "task_id": "t1"}]


def test_close_rejects_what_is_pending_and_stops_for_good(page: Any) -> None:
    outcome = page.evaluate(
        """async () => {
          const client = make();
          sockets[0].open();
          const pending = client.result("t1").catch((e) => [e.name, e.code]);
          client.close();
          let threw = null;
          try { client.subscribe("t2", () => {}); } catch (e) { threw = e.code; }
          await new Promise((resolve) => setTimeout(resolve, 150));
          return {error: await pending, state: client.state, threw, sockets: sockets.length, closedWith: sockets[0].closedWith};
        }"""
    )
    assert outcome == {
        "error": ["SubscriptionError", "closed"],
        "state": "closed",
        "threw": "closed",
        "sockets": 1,
        "closedWith": 1000,
    }


def test_coming_back_online_reconnects_at_once_but_only_once(page: Any) -> None:
    counts = page.evaluate(
        """() => {
          const client = make({initialDelay: 60_000});
          sockets[0].open();
          sockets[0].drop();
          const waiting = sockets.length;
          window.dispatchEvent(new Event("online"));
          const afterOnline = sockets.length;
          window.dispatchEvent(new Event("online"));  // the new socket is still connecting
          return [waiting, afterOnline, sockets.length, client.state];
        }"""
    )
    assert counts == [1, 2, 2, "reconnecting"]


def test_the_feed_hands_other_frame_types_to_frame_events_and_never_to_on_update(page: Any) -> None:
    seen = page.evaluate(
        """async () => {
          const updates = [], frames = [];
          const feed = new tc.FeedClient({WebSocket: FakeSocket, onUpdate: (d) => updates.push(d.task_id)});
          feed.addEventListener("frame", (e) => frames.push(e.detail.type));
          sockets[0].open();
          sockets[0].push({type: "worker.update", hostname: "celery@a", status: "lost", version: 3});
          sockets[0].push({type: "something.new", anything: true});
          sockets[0].push({type: "pong"});
          sockets[0].push(doc(1, "STARTED", "t9"));
          feed.send({type: "control", action: "revoke", task_id: "t9"});
          const sent = sockets[0].sent.at(-1);
          feed.close();
          return {updates, frames, sent};
        }"""
    )
    assert seen["updates"] == ["t9"]
    assert seen["frames"] == ["worker.update", "something.new"]
    assert seen["sent"] == {"type": "control", "action": "revoke", "task_id": "t9"}
