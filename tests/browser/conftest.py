"""Browser tests: Debian's Chromium driven by Playwright against a real daphne and worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services
from tests.browser.support import CHROMIUM_ARGS, Server, watch
from tests.support.processes import ManagedProcess


@pytest.fixture(scope="package", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    """Let these tests use the ORM while Playwright runs.

    The sync Playwright API keeps an event loop running in the test's thread, which Django's
    async-safety check takes for async code. Set for this package only; child processes never
    see it (child_env drops DJANGO_* variables).
    """
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the package."""
    problem = services.browser_problem()
    if problem:
        pytest.skip(problem)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=services.CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def server(service_env: dict[str, str], worker: ManagedProcess) -> Iterator[Server]:
    """daphne with anonymous submission on (as under ./scripts/run), plus the session's worker."""
    running = Server({**service_env, "TASKSTORE_ANONYMOUS_SUBMIT": "1"})
    yield running
    running.stop()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) for one test."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page_problems() -> list[str]:
    """What went wrong in the test's pages: uncaught errors, and dialogs (none should open)."""
    return []


@pytest.fixture
def page(context: Any, page_problems: list[str]) -> Iterator[Any]:
    """A page that records uncaught errors and dialogs; the test fails if it raised errors."""
    yield watch(context.new_page(), page_problems)
    errors = [p for p in page_problems if p.startswith("pageerror")]
    assert not errors, f"the page raised: {errors}"
