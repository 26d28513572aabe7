"""The application under uvicorn, as a user runs it (``uvicorn mysite.asgi:application``): uvicorn
works out the ASGI version from the outermost callable, and taskstore's wrappers must read as
ASGI 3 to it, or every request fails with a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from realtime import tasks
from taskstore.asgi import BindPublisherLoop, OriginValidator, SessionAuthMiddleware
from taskstore.tokens import make_token
from tests.live.client import http, off_loop, websocket
from tests.support.markers import real_services
from tests.support.processes import uvicorn

uvicorn_config = pytest.importorskip("uvicorn.config")


async def _inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI 3 application for the wrappers to wrap."""


@pytest.mark.parametrize("wrapper", [BindPublisherLoop, OriginValidator, SessionAuthMiddleware])
def test_uvicorn_reads_each_wrapper_as_asgi3(wrapper: Any) -> None:
    config = uvicorn_config.Config(app=wrapper(_inner))
    config.load()
    assert config.interface == "asgi3"


@pytest.fixture(scope="module")
def port(service_env: dict[str, str]) -> Iterator[int]:
    proc, port = uvicorn(service_env)
    yield port
    proc.stop()


@real_services
async def test_a_task_is_followed_over_uvicorn_from_publish_to_result(worker: Any, port: int) -> None:
    task_id = (await off_loop(tasks.add.delay, 2, 3)).id
    token = make_token(task_id)
    async with websocket(port) as socket:
        await socket.send({"type": "subscribe", "task_id": task_id, "token": token, "since": 0})
        frames = await socket.until_terminal(task_id)
    lifecycle = ("PENDING", "RECEIVED", "STARTED", "SUCCESS")
    assert [(f["version"], f["state"]) for f in frames] == list(enumerate(lifecycle, start=1))
    assert frames[-1]["result"] == 5
    status, body = await off_loop(http, port, "GET", f"/api/tasks/{task_id}/?token={token}")
    assert (status, body["result"]) == (200, 5)


@real_services
async def test_a_foreign_origin_is_refused_under_uvicorn(port: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websocket(port, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
