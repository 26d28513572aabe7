"""The operations console in Chromium: the workers list shows a SIGKILLed worker going lost and
the queues view a backlog draining, without a reload; the dashboard's statistics table and
runtime chart render. Screenshots go to test-artifacts/ (docs/operations.md shows them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from realtime import tasks
from taskstore.models import QueueRecord, WorkerRecord
from tests.browser.support import Server, log_in, screenshot
from tests.operations.support import (
    LOST_BOUND,
    fast_env,
    hostname_of,
    kill_main_process,
    queue_name,
    start_worker,
)
from tests.support.markers import IN_BROWSER
from tests.support.processes import ManagedProcess, wait_for

pytestmark = IN_BROWSER

BACKLOG_QUEUE = queue_name("browser-backlog")
PURGE_QUEUE = queue_name("browser-purge")
BACKLOG = 8


@pytest.fixture(scope="module")
def ops_server(service_env: dict[str, str]) -> Iterator[Server]:
    """daphne with fast heartbeats and monitor rounds, watching the tests' queues."""
    running = Server(fast_env(service_env, TASKSTORE_WATCH_QUEUES=f"{BACKLOG_QUEUE},{PURGE_QUEUE}"))
    yield running
    running.stop()


@pytest.fixture
def staff(context: Any, ops_server: Server) -> Any:
    user = get_user_model().objects.create_superuser(
        f"ops-{get_user_model().objects.count()}", "o@example.com", "x"
    )
    log_in(context, ops_server, user)
    return user


def open_live(page: Any, server: Server, path: str) -> None:
    page.goto(server.url + path)
    expect(page.locator("#taskstore-live-status")).to_have_attribute("data-state", "open")
    page.evaluate("window.sameDocument = true")  # a reload would lose it


def test_the_workers_list_shows_a_killed_worker_lost_without_a_reload(
    page: Any, ops_server: Server, staff: Any
) -> None:
    open_live(page, ops_server, "/admin/taskstore/workerrecord/")
    proc: ManagedProcess = start_worker(ops_server.env, "ts11-browser", queue_name("browser-workers"), 1)
    try:
        hostname = hostname_of("ts11-browser")
        row = page.locator(f'#ops-table tr[data-hostname="{hostname}"]')
        expect(row).to_have_attribute("data-status", "online")
        expect(row.locator(".ops-status")).to_have_text("online")
        expect(row).to_contain_text("prefork")
        screenshot(page, "admin-workers-online")
        kill_main_process(proc)
        expect(row).to_have_attribute("data-status", "lost", timeout=LOST_BOUND * 1000 + 5000)
    finally:
        proc.stop()
    assert WorkerRecord.objects.get(hostname=hostname).status == WorkerRecord.LOST
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "admin-workers-lost")


def test_the_queues_view_shows_a_backlog_draining(page: Any, ops_server: Server, staff: Any) -> None:
    open_live(page, ops_server, "/admin/taskstore/queuerecord/")
    ids = [tasks.add.apply_async((i, i), queue=BACKLOG_QUEUE).id for i in range(BACKLOG)]
    row = page.locator(f'#ops-table tr[data-queue="{BACKLOG_QUEUE}"]')
    expect(row).to_have_attribute("data-depth", str(BACKLOG))
    screenshot(page, "admin-queues-backlog")
    page.evaluate(
        """(queue) => {
          window.depthsShown = [];
          new MutationObserver(() => {
            const row = document.querySelector(`#ops-table tr[data-queue="${queue}"]`);
            if (row && row.dataset.depth !== window.depthsShown.at(-1)) window.depthsShown.push(row.dataset.depth);
          }).observe(document.getElementById("ops-table"), {subtree: true, childList: true, attributes: true});
        }""",
        BACKLOG_QUEUE,
    )
    proc = start_worker(ops_server.env, "ts11-drainer", BACKLOG_QUEUE, 1)
    try:
        expect(row).to_have_attribute("data-depth", "0", timeout=60_000)
        for result_id in ids:
            tasks.add.AsyncResult(result_id).get(timeout=30)
    finally:
        proc.stop()
    shown = [int(d) for d in page.evaluate("window.depthsShown")]
    assert shown[-1] == 0 and shown == sorted(shown, reverse=True)
    assert page.evaluate("window.sameDocument") is True


def test_purge_asks_first_then_empties_the_queue(page: Any, ops_server: Server, staff: Any) -> None:
    open_live(page, ops_server, "/admin/taskstore/queuerecord/")
    for i in range(3):
        tasks.add.apply_async((i, i), queue=PURGE_QUEUE)
    row = page.locator(f'#ops-table tr[data-queue="{PURGE_QUEUE}"]')
    expect(row).to_have_attribute("data-depth", "3")
    page.evaluate("window.confirm = (question) => { window.asked = question; return true; }")
    row.get_by_role("button", name="Purge").click()
    expect(row).to_have_attribute("data-depth", "0")
    assert PURGE_QUEUE in page.evaluate("window.asked")
    assert QueueRecord.objects.get(name=PURGE_QUEUE).depth == 0


def test_the_dashboard_shows_workers_queues_and_statistics_with_a_runtime_chart(
    page: Any, ops_server: Server, staff: Any, worker: ManagedProcess
) -> None:
    for i in range(5):
        tasks.add.delay(i, i).get(timeout=30)
    tasks.sleep.delay(0.3).get(timeout=30)
    failed = tasks.fail.delay("chart boom")
    wait_for(lambda: failed.state == "FAILURE", 30, "the failure")
    page.goto(ops_server.url + "/dashboard/")
    expect(page.locator("#transport")).to_have_attribute("data-state", "open")
    expect(page.locator('#statistics tbody tr[data-task-name="realtime.tasks.add"]')).to_have_count(1)
    add_row = page.locator('#statistics tbody tr[data-task-name="realtime.tasks.add"]')
    assert int(add_row.locator('[data-field="count"]').inner_text()) >= 5
    fail_row = page.locator('#statistics tbody tr[data-task-name="realtime.tasks.fail"]')
    expect(fail_row.locator('[data-field="failure_rate"]')).to_have_text("100.0 %")
    chart = page.locator("#runtime-chart")
    expect(chart.locator("rect.p50")).not_to_have_count(0)
    assert int(chart.get_attribute("data-bars")) >= 3
    expect(page.locator("#workers tbody tr")).not_to_have_count(0)
    expect(page.locator("#queues tbody tr")).not_to_have_count(0)
    page.locator("#window").select_option("24h")
    expect(add_row).to_have_count(1)
    screenshot(page, "dashboard-operations")
