"""The embedded default: ``./scripts/run`` with nothing else installed answers on its port, and
a task submitted there runs in the in-process worker and reaches a WebSocket subscriber through
the in-memory channel layer."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from taskstore import compat
from tests.support.processes import ROOT, ManagedProcess, free_port, port_open

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``scripts/run --port N`` with no REDIS_URL or DATABASE_URL, on a fresh SQLite file."""
    port = free_port()
    keep = ("PATH", "HOME", "LANG", "LC_ALL")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["TASKSTORE_VAR_DIR"] = str(tmp_path_factory.mktemp("embedded"))
    proc = ManagedProcess("scripts-run", [str(ROOT / "scripts" / "run"), "--port", str(port)], env)
    proc.start(ready=lambda: port_open(port), timeout=180)
    assert "in-process Celery worker" in proc.output()
    assert f"http://127.0.0.1:{port}/" in proc.output()
    yield port
    proc.stop()
    assert Path(env["TASKSTORE_VAR_DIR"], "db.sqlite3").exists()


def _submit(port: int, task: str, args: list) -> dict:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"http://127.0.0.1:{port}/", timeout=10) as page:
        assert page.status == 200
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/tasks/",
        data=json.dumps({"task": task, "args": args, "kwargs": {}}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-CSRFToken": csrf,
            "Referer": f"http://127.0.0.1:{port}/",
        },
        method="POST",
    )
    with opener.open(request, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())


async def test_a_task_runs_and_its_states_are_pushed(embedded: int) -> None:
    submitted = await asyncio.to_thread(_submit, embedded, "realtime.tasks.progress", [3, 0.05])
    async with websockets.connect(f"ws://127.0.0.1:{embedded}/ws/tasks/") as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "task_id": submitted["task_id"],
                    "since": 0,
                    "token": submitted["token"],
                }
            )
        )
        frames = []
        async with compat.timeout(30):
            while not frames or frames[-1]["state"] != "SUCCESS":
                frame = json.loads(await ws.recv())
                assert frame["type"] == "task.update", frame
                frames.append(frame)
    versions = [f["version"] for f in frames]
    assert versions == list(range(1, len(versions) + 1))
    assert [f["state"] for f in frames][-4:] == ["PROGRESS", "PROGRESS", "PROGRESS", "SUCCESS"]
    assert frames[-1]["result"] == 3
    assert frames[-1]["worker"]  # recorded by the in-process worker
