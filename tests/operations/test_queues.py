"""Queue depths read from the broker follow a known backlog, on Redis and on RabbitMQ."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from kombu import Connection

from realtime import tasks
from taskstore.models import QueueRecord, TaskRecord
from tests import services
from tests.live.client import http, session_cookie
from tests.operations.support import fast_env, queue_name, start_worker
from tests.support.markers import REAL_SERVICES
from tests.support.processes import daphne, wait_for

pytestmark = REAL_SERVICES

BACKLOG = 12
# The suite's own broker: the monitor's lease is per broker, but the list of queues is shared,
# so a process holding the lease of another broker (the suite's other servers and workers) would
# read this test's queue there, where it is empty, and record a depth of 0 between its reads.
REDIS_BROKER = services.REDIS_URL
RABBITMQ_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """The suite's Redis broker, or RabbitMQ (queues named ts11-…)."""
    url = REDIS_BROKER if request.param == "redis" else RABBITMQ_BROKER
    if not reachable(url):
        if services.IN_CI:
            pytest.fail(f"CI=true and the broker is missing: {url}")
        pytest.skip(f"{request.param} is not reachable at {url}")
    yield url


def depth(queue: str) -> int | None:
    row = QueueRecord.objects.filter(name=queue).first()
    return None if row is None else row.depth


def send_backlog(broker: str, queue: str, count: int) -> list[str]:
    with Connection(broker) as conn:
        return [tasks.add.apply_async((i, 1), queue=queue, connection=conn).id for i in range(count)]


def delete_queue(broker: str, queue: str) -> None:
    with Connection(broker) as conn:
        channel = conn.channel()
        try:
            channel.queue_delete(queue)
        finally:
            channel.close()


def test_depth_reads_the_backlog_and_drains_as_a_worker_starts(
    service_env: dict[str, str], broker: str
) -> None:
    queue = queue_name("backlog")
    env = fast_env(service_env, CELERY_BROKER_URL=broker, TASKSTORE_WATCH_QUEUES=queue)
    server, port = daphne(env)
    worker = None
    try:
        http(port, "GET", "/api/tasks/")  # the server's monitor starts with its first request
        ids = send_backlog(broker, queue, BACKLOG)
        wait_for(lambda: depth(queue) == BACKLOG, 15, f"the depth to read {BACKLOG}")
        row = QueueRecord.objects.get(name=queue)
        assert row.broker == ("redis" if broker.startswith("redis") else "amqp")

        seen: list[int] = []

        def drained() -> bool:
            value = depth(queue)
            if value is not None and (not seen or seen[-1] != value):
                seen.append(value)
            return value == 0

        worker = start_worker(env, "ts11-drain", queue, concurrency=1)
        wait_for(drained, 60, "the queue to drain")
        wait_for(
            lambda: TaskRecord.objects.filter(task_id__in=ids, state="SUCCESS").count() == BACKLOG,
            30,
            "every task of the backlog to succeed",
        )
        assert seen == sorted(seen, reverse=True), f"the depth only went down: {seen}"

        staff = session_cookie(User.objects.create_user(f"purger-{queue}", is_staff=True))
        worker.stop()
        worker = None
        send_backlog(broker, queue, 5)
        wait_for(lambda: depth(queue) == 5, 15, "the depth to read 5")
        status, body = http(port, "GET", "/api/ops/queues/", cookies={"sessionid": staff})
        assert status == 200
        assert {q["queue"]: q["depth"] for q in body["queues"]}[queue] == 5
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        delete_queue(broker, queue)
