"""/metrics after a known workload: parsed with prometheus_client's own parser, the totals match
the database, two daphne processes report the same, and anonymous scrapes are refused."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db.models import Count
from prometheus_client.parser import text_string_to_metric_families

from realtime import tasks
from taskstore.models import PushCounters, TaskRecord
from tests.live.client import session_cookie, websocket
from tests.operations.support import fast_env, hostname_of, queue_name, start_worker
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, daphne, wait_for

pytestmark = REAL_SERVICES

TOKEN = "metrics-token-for-the-tests-0123"
QUEUE = queue_name("metrics")


@pytest.fixture(scope="module")
def env(service_env: dict[str, str]) -> dict[str, str]:
    return fast_env(service_env, TASKSTORE_METRICS_TOKEN=TOKEN)


@pytest.fixture(scope="module")
def daphnes(env: dict[str, str]) -> Iterator[list[tuple[ManagedProcess, int]]]:
    """Two daphne processes on the same database and Redis."""
    started = [daphne(env), daphne(env)]
    yield started
    for proc, _ in started:
        proc.stop()


@pytest.fixture(scope="module")
def ports(daphnes: list[tuple[ManagedProcess, int]]) -> tuple[int, int]:
    return daphnes[0][1], daphnes[1][1]


@pytest.fixture(scope="module")
def servers(daphnes: list[tuple[ManagedProcess, int]]) -> tuple[ManagedProcess, ManagedProcess]:
    return daphnes[0][0], daphnes[1][0]


@pytest.fixture(scope="module")
def metrics_worker(env: dict[str, str]) -> Iterator[ManagedProcess]:
    proc = start_worker(env, "ts11-metrics", QUEUE, concurrency=2)
    yield proc
    proc.stop()


def scrape(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an authorised scrape, by name and labels."""
    status, text = scrape(port, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def database_totals() -> dict[tuple[str, str], int]:
    """Finished tasks by name and state, counted by the database."""
    rows = TaskRecord.objects.filter(date_done__isnull=False).values_list("task_name", "state")
    return {(n, s): c for n, s, c in rows.annotate(c=Count("pk")).values_list("task_name", "state", "c")}


def reported_totals(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, str], int]:
    return {
        (dict(labels)["name"], dict(labels)["state"]): int(value)
        for (name, labels), value in found.items()
        if name == "taskstore_tasks_finished_total"
    }


def test_the_metrics_match_the_database_on_every_server(
    ports: tuple[int, int], metrics_worker: ManagedProcess
) -> None:
    port_a, port_b = ports
    results = [tasks.add.apply_async((i, i), queue=QUEUE) for i in range(6)]
    failures = [tasks.fail.apply_async(("boom",), queue=QUEUE) for _ in range(2)]
    for result in results:
        result.get(timeout=30)
    for failure in failures:
        with pytest.raises(ValueError):
            failure.get(timeout=30)

    found = wait_for(
        lambda: (s := samples(port_a)) and reported_totals(s) == database_totals() and s,
        30,
        "/metrics to count what the database holds",
    )
    assert found[("celery_task_succeeded_total", (("name", "realtime.tasks.add"),))] >= 6
    assert found[("celery_task_failed_total", (("name", "realtime.tasks.fail"),))] >= 2
    runtime_count = found[("celery_task_runtime_seconds_count", (("name", "realtime.tasks.add"),))]
    assert runtime_count == database_totals()[("realtime.tasks.add", "SUCCESS")]
    infinite = found[("celery_task_runtime_seconds_bucket", (("le", "+Inf"), ("name", "realtime.tasks.add")))]
    assert infinite == runtime_count
    hostname = hostname_of("ts11-metrics")
    assert found[("celery_worker_up", (("hostname", hostname),))] == 1
    assert ("celery_queue_length", (("queue_name", QUEUE),)) in found

    # The other server reads the same tables: the same totals, with nothing counted twice.
    other = samples(port_b)
    task_keys = [k for k in found if k[0].startswith(("celery_task_", "taskstore_tasks_"))]
    assert {k: other.get(k) for k in task_keys} == {k: found[k] for k in task_keys}


def test_open_sockets_and_frames_are_counted_per_server_and_summed_alike(
    ports: tuple[int, int], servers: tuple[ManagedProcess, ManagedProcess]
) -> None:
    port_a, port_b = ports
    cookie = session_cookie(User.objects.create_user("metrics-staff", is_staff=True))

    def open_on(proc: ManagedProcess) -> int | None:
        """Open sockets in the server process's own row."""
        row = PushCounters.objects.filter(process__contains=f":{proc.pid}:").first()
        return None if row is None else row.open_sockets

    def totals(port: int) -> tuple[float, float]:
        found = samples(port)
        return found[("taskstore_push_open_sockets", ())], found[("taskstore_push_frames_sent_total", ())]

    async def hold_two() -> tuple[float, float]:
        async with (
            websocket(port_a, "/ws/feed/", cookie=cookie) as one,
            websocket(port_b, "/ws/feed/", cookie=cookie) as two,
        ):
            for socket in (one, two):  # a staff feed may carry other frames before the pong
                await socket.send({"type": "ping"})
                await socket.until(lambda f: f.get("type") == "pong")
            # database_sync_to_async closes the thread's connection after: one left open in a
            # thread that ends with the loop keeps the test database from being dropped.
            await database_sync_to_async(wait_for)(
                lambda: open_on(servers[0]) == 1 and open_on(servers[1]) == 1, 10, "one socket each"
            )
            return await asyncio.to_thread(totals, port_a)

    open_total, _ = asyncio.run(hold_two())
    assert open_total >= 2
    wait_for(lambda: open_on(servers[0]) == 0 and open_on(servers[1]) == 0, 10, "the sockets to close")
    # Both servers sum the same rows: the same totals (frames may still move between two scrapes,
    # so compare the open sockets, then frames from a quiet moment).
    wait_for(lambda: totals(port_a) == totals(port_b), 10, "both servers to report the same totals")
    assert totals(port_a)[1] >= 2  # the two pongs, at least


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["anonymous", "wrong-token", "not-bearer"],
)
def test_scrapes_without_staff_or_the_token_are_refused(
    ports: tuple[int, int], headers: dict[str, Any]
) -> None:
    status, _ = scrape(ports[0], headers)
    assert status == 403


def test_a_plain_user_is_refused_and_staff_is_served(ports: tuple[int, int]) -> None:
    plain = session_cookie(User.objects.create_user("metrics-plain"))
    staff = session_cookie(User.objects.create_user("metrics-staff-2", is_staff=True))
    assert scrape(ports[0], {"Cookie": f"sessionid={plain}"})[0] == 403
    status, text = scrape(ports[0], {"Cookie": f"sessionid={staff}"})
    assert status == 200
    assert "# TYPE celery_worker_up gauge" in text
