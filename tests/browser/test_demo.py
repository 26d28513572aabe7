"""The demo page in Chromium: tasks started from the page run live to their end, and what a task
returns is shown as text, never as markup."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from taskstore.models import TaskRecord
from tests.browser.support import Server, screenshot
from tests.support.markers import IN_BROWSER

pytestmark = IN_BROWSER

# Records every value the progress bars of the page take, in order.
WATCH_BARS = """() => {
  window.barValues = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.target.localName === "progress" && change.target.hasAttribute("value")) {
        window.barValues.push([change.target.value, change.target.max]);
      }
    }
  }).observe(document.getElementById("runs"), {subtree: true, attributes: true, attributeFilter: ["value", "max"]});
}"""


def _open(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#transport")).to_have_attribute("data-state", "open")
    expect(page.locator("#transport")).to_have_text("Live: connected")


def test_progress_bar_moves_to_100_percent_and_the_result_appears(page: Any, server: Server) -> None:
    _open(page, server)
    page.evaluate(WATCH_BARS)
    page.get_by_label("steps").fill("20")
    page.get_by_role("button", name="Run progress").click()

    run = page.locator(".run").first
    expect(run.locator("[data-field=call]")).to_have_text("progress(20)")
    expect(run).to_have_attribute("data-state", "SUCCESS")
    expect(run.locator("[data-field=percent]")).to_have_text("100%")
    expect(run.locator("[data-field=result]")).to_have_text("20")
    assert run.locator("progress").evaluate("bar => [bar.value, bar.max]") == [20, 20]

    # The bar moved step by step as PROGRESS arrived, never backwards.
    values = page.evaluate("window.barValues")
    fractions = [value / total for value, total in values]
    assert fractions == sorted(fractions)
    assert any(0 < f < 1 for f in fractions), values
    assert fractions[-1] == 1

    task_id = run.get_attribute("data-task-id")
    record = TaskRecord.objects.get(task_id=task_id)
    assert record.state == "SUCCESS"
    expect(run.locator("[data-field=version]")).to_have_text(str(record.version))
    screenshot(page, "demo-progress")


def test_a_failing_task_shows_its_error(page: Any, server: Server) -> None:
    _open(page, server)
    page.get_by_label("message").fill("boom")
    page.get_by_role("button", name="Run fail").click()

    run = page.locator(".run").first
    expect(run).to_have_attribute("data-state", "FAILURE")
    expect(run.locator("[data-field=state]")).to_have_text("FAILURE")
    expect(run.locator("[data-field=error]")).to_have_text("ValueError: boom")
    expect(run.locator("[data-field=result]")).to_have_text("")
    screenshot(page, "demo-fail")


def test_a_result_with_markup_is_shown_as_text(page: Any, server: Server, page_problems: list[str]) -> None:
    payload = "<img src=x onerror=alert(1)>"
    _open(page, server)
    page.get_by_label("x", exact=True).fill(payload)
    page.get_by_label("y", exact=True).fill("")
    page.get_by_role("button", name="Run add").click()

    run = page.locator(".run").first
    expect(run).to_have_attribute("data-state", "SUCCESS")
    # add("<img …>", "") returns the string itself, shown literally (as JSON).
    expect(run.locator("[data-field=result]")).to_have_text(f'"{payload}"')
    expect(run.locator("[data-field=call]")).to_have_text(f'add("{payload}", "")')
    assert run.locator("img").count() == 0
    assert page.locator("img").count() == 0
    assert not [p for p in page_problems if p.startswith("dialog")], page_problems
    assert TaskRecord.objects.get(task_id=run.get_attribute("data-task-id")).result == payload


def test_a_refused_submission_is_shown(page: Any, server: Server) -> None:
    _open(page, server)
    # A task the server does not accept (not in TASKSTORE_SUBMITTABLE_TASKS): 400 with a reason.
    page.locator("form[data-task='realtime.tasks.add']").evaluate(
        "form => form.dataset.task = 'realtime.tasks.unknown'"
    )
    page.get_by_role("button", name="Run add").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Could not start unknown(2, 3)")
    assert page.locator(".run").count() == 0
