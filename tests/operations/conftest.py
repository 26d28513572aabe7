"""Fixtures the operations tests share; each module gives its own ``env`` (tests.operations.support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live.client import http
from tests.support.processes import daphne


@pytest.fixture(scope="module")
def port(env: dict[str, str]) -> Iterator[int]:
    """A daphne on the module's ``env`` whose monitor runs (it starts with the first request)."""
    proc, port = daphne(env)
    http(port, "GET", "/api/tasks/")
    yield port
    proc.stop()
