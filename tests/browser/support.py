"""What the browser tests share besides fixtures: the server under test, logging in, screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.processes import ROOT, daphne

ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Submits a task from the page the way the demo does; resolves to {status, body}.
SUBMIT_JS = """async ([task, args]) => {
  const csrf = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1] || "";
  const response = await fetch("/api/tasks/", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
    body: JSON.stringify({task, args, kwargs: {}}),
  });
  return {status: response.status, body: await response.json()};
}"""


class Server:
    """A real daphne serving the project on the test database and Redis; restartable in place."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process, self.port = daphne(env)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Stop daphne (every socket drops) and start it again on the same port."""
        self.process.stop()
        self.start()

    def start(self) -> None:
        """Start it again on the same port after :meth:`stop`."""
        self.process, _ = daphne(self.env, self.port)

    def stop(self) -> None:
        """Stop it."""
        self.process.stop()


def watch(page: Any, problems: list[str]) -> Any:
    """Record ``page``'s uncaught errors and dialogs (dismissed) in ``problems``."""
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.type} {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    return page


def log_in(context: Any, server: Server, user: Any) -> None:
    """Give the browser context a session for ``user`` (stored in the test database)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": server.url}])


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
