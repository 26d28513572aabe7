"""Where the real services for the tests are, and whether they answer."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

import dj_database_url

DATABASE_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/taskstore"
# A Redis database of its own, so a test run never flushes a development service's data.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/9"
SECRET_KEY = "taskstore-tests-secret-key-not-for-production-0123456789"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@functools.cache
def postgres_problem() -> str | None:
    """None when PostgreSQL answers at DATABASE_URL, else why not."""
    config = dj_database_url.parse(DATABASE_URL)
    if "postgresql" not in config["ENGINE"]:
        return f"DATABASE_URL={DATABASE_URL} is not PostgreSQL"
    host, port = config.get("HOST") or "127.0.0.1", int(config.get("PORT") or 5432)
    if not _reachable(host, port):
        return f"PostgreSQL is not reachable at {host}:{port} (DATABASE_URL)"
    return None


@functools.cache
def redis_problem() -> str | None:
    """None when Redis answers at REDIS_URL, else why not."""
    parsed = urlparse(REDIS_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if not _reachable(host, port):
        return f"Redis is not reachable at {host}:{port} (REDIS_URL)"
    return None


CHROMIUM = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"


@functools.cache
def browser_problem() -> str | None:
    """None when Chromium and Playwright are there, else why not."""
    if not os.path.exists(CHROMIUM):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    return None
