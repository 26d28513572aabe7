"""A newcomer's first run: ``./scripts/run`` with nothing else installed names a page, and on that
page tasks run live (SQLite, in-memory channel layer, in-process worker)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import screenshot
from tests.support.processes import ROOT, ManagedProcess, free_port, port_open

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def named_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``scripts/run --port N`` with no REDIS_URL or DATABASE_URL; yield the URL it names."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    env["TASKSTORE_VAR_DIR"] = str(tmp_path_factory.mktemp("embedded-demo"))
    # Its output goes to a file here, not a terminal: unbuffered, so the test can read it.
    env["PYTHONUNBUFFERED"] = "1"
    proc = ManagedProcess("scripts-run-demo", [str(ROOT / "scripts" / "run"), "--port", str(port)], env)
    named = re.compile(r"Open (http://\S+/) in a browser")
    proc.start(ready=lambda: port_open(port) and named.search(proc.output()), timeout=180)
    yield named.search(proc.output()).group(1)
    proc.stop()


def test_the_page_scripts_run_names_runs_tasks_live(page: Any, named_page: str) -> None:
    page.goto(named_page)
    expect(page.locator("#transport")).to_have_text("Live: connected")

    page.get_by_label("steps").fill("5")
    page.get_by_role("button", name="Run progress").click()
    progress = page.locator(".run").first
    expect(progress).to_have_attribute("data-state", "SUCCESS")
    expect(progress.locator("[data-field=percent]")).to_have_text("100%")
    expect(progress.locator("[data-field=result]")).to_have_text("5")

    page.get_by_role("button", name="Run flaky").click()
    flaky = page.locator(".run").first
    expect(flaky.locator("[data-field=call]")).to_have_text("flaky(2)")
    expect(flaky).to_have_attribute("data-state", "SUCCESS")
    expect(flaky.locator("[data-field=result]")).to_have_text('"ok"')
    expect(flaky.locator("[data-field=attempt]")).to_have_text("· attempt 3")
    expect(flaky.locator("[data-field=error]")).to_have_text("")  # the retries' errors are gone
    screenshot(page, "embedded-demo")
