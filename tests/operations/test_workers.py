"""Workers, live: real worker processes record themselves online, beat, go offline or lost."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.contrib.auth.models import User

from realtime import tasks
from taskstore.models import WorkerRecord
from tests.live.client import http, off_loop, session_cookie, websocket
from tests.operations.support import (
    LOST_BOUND,
    fast_env,
    hostname_of,
    kill_main_process,
    queue_name,
    start_worker,
    wait_worker,
    worker_row,
)
from tests.support.markers import REAL_SERVICES

pytestmark = REAL_SERVICES


@pytest.fixture(scope="module")
def env(service_env: dict[str, str]) -> dict[str, str]:
    return fast_env(service_env)


def test_a_worker_records_itself_counts_what_ran_and_goes_offline(env: dict[str, str]) -> None:
    queue = queue_name("counts")
    proc = start_worker(env, "ts11-counts", queue)
    try:
        hostname = hostname_of("ts11-counts")
        row = wait_worker(hostname, 10, "the worker online", status=WorkerRecord.ONLINE)
        assert row.pid == proc.pid
        assert row.pool == "prefork"
        assert row.concurrency == 2
        assert row.queues == [queue]
        assert row.software["celery"] and row.software["python"]
        assert (row.running, row.processed, row.succeeded, row.failed) == (0, 0, 0, 0)

        sleeper = tasks.sleep.apply_async((3,), queue=queue)
        wait_worker(hostname, 10, "one task running", running=1)
        results = [tasks.add.apply_async((i, i), queue=queue) for i in range(3)]
        failure = tasks.fail.apply_async(("boom",), queue=queue)
        for result in results:
            result.get(timeout=30)
        with pytest.raises(ValueError):
            failure.get(timeout=30)
        sleeper.get(timeout=30)
        row = wait_worker(hostname, 10, "the counts of what ran", processed=5, running=0)
        assert (row.succeeded, row.failed) == (4, 1)
    finally:
        proc.stop()
    row = wait_worker(hostname, 10, "the worker offline", status=WorkerRecord.OFFLINE)
    assert row.stopped is not None
    assert (row.running, row.processed, row.succeeded, row.failed) == (0, 5, 4, 1)


def test_an_idle_heartbeat_writes_nothing_new_and_a_lost_row_comes_back(env: dict[str, str]) -> None:
    queue = queue_name("idle")
    proc = start_worker(env, "ts11-idle", queue, concurrency=1)
    try:
        hostname = hostname_of("ts11-idle")
        first = wait_worker(hostname, 10, "the worker online", status=WorkerRecord.ONLINE)
        writes, deadline = {first.date_updated}, time.monotonic() + 3.0
        while time.monotonic() < deadline:  # ten heartbeats
            writes.add(worker_row(hostname).date_updated)
            time.sleep(0.05)
        row = worker_row(hostname)
        # Only lease renewals (every LOST_AFTER / 2 = 1 s) wrote, and none made a new version.
        assert 2 <= len(writes) <= 5
        assert row.version == first.version
        assert row.status == WorkerRecord.ONLINE

        # A row that goes away (deleted by hand) is written again by the next heartbeat.
        WorkerRecord.objects.filter(hostname=hostname).delete()
        again = wait_worker(hostname, 5, "the row written again", status=WorkerRecord.ONLINE)
        assert (again.pid, again.started, again.queues) == (first.pid, first.started, first.queues)
    finally:
        proc.stop()


async def test_a_killed_worker_shows_lost_on_the_staff_feed_within_the_bound(
    env: dict[str, str], port: int
) -> None:
    staff = await off_loop(User.objects.create_user, "ops-staff", is_staff=True)
    cookie = await off_loop(session_cookie, staff)
    queue = queue_name("lost")
    async with websocket(port, "/ws/feed/", cookie=cookie) as feed:
        proc = await asyncio.to_thread(start_worker, env, "ts11-lost", queue, 1)
        hostname = await off_loop(hostname_of, "ts11-lost")
        frames = await feed.until(
            lambda f: (
                f.get("type") == "worker.update" and f["hostname"] == hostname and f["status"] == "online"
            )
        )
        assert frames[-1]["pid"] == proc.pid
        killed = time.monotonic()
        await asyncio.to_thread(kill_main_process, proc)
        frames += await feed.until(
            lambda f: (
                f.get("type") == "worker.update" and f["hostname"] == hostname and f["status"] == "lost"
            ),
            timeout=LOST_BOUND + 5,
        )
        took = time.monotonic() - killed
    assert took <= LOST_BOUND, f"lost after {took:.1f}s, bound {LOST_BOUND}s"
    versions = [
        f["version"] for f in frames if f.get("type") == "worker.update" and f["hostname"] == hostname
    ]
    assert versions == sorted(set(versions)), "each version once, in order"
    row = await off_loop(worker_row, hostname)
    assert row.status == WorkerRecord.LOST
    status, body = await asyncio.to_thread(
        http, port, "GET", "/api/ops/workers/", None, {"sessionid": cookie}
    )
    assert status == 200
    assert {w["hostname"]: w["status"] for w in body["workers"]}[hostname] == "lost"


def test_the_workers_api_is_for_staff_only(port: int) -> None:
    user = session_cookie(User.objects.create_user("ops-plain"))
    for path in ("/api/ops/workers/", "/api/ops/queues/", "/api/ops/stats/", "/api/ops/actions/"):
        assert http(port, "GET", path)[0] == 403
        assert http(port, "GET", path, cookies={"sessionid": user})[0] == 403
