"""Queue depths read from the broker follow a known backlog, on Redis and on RabbitMQ."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from kombu import Connection

from realtime import tasks
from taskstore.models import QueueRecord, TaskRecord
from taskstore.operations import brokers
from taskstore.operations.models import Lease
from tests import services
from tests.live.client import http, session_cookie
from tests.operations.support import fast_env, queue_name, start_worker
from tests.support.markers import REAL_SERVICES
from tests.support.processes import daphne, wait_for

pytestmark = REAL_SERVICES

BACKLOG = 12
# A broker of this test's own (a Redis database no other module uses as its broker but the
# monitor's), beside the suite's: a server on the suite's broker runs alongside, and its monitor
# must leave this broker's queue alone (it is empty there).
REDIS_BROKER = services.REDIS_URL.rsplit("/", 1)[0] + "/7"
RABBITMQ_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
OTHER_BROKER = services.REDIS_URL


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


def rounds_of_the_monitor_of(broker: str, rounds: int) -> None:
    """Wait until whichever process holds ``broker``'s monitor lease has done ``rounds`` more
    rounds (each renews the lease)."""
    name = brokers.LEASE_PREFIX + brokers.key_of(Connection(broker))
    seen: list[object] = []

    def renewed() -> bool:
        lease = Lease.objects.filter(name=name, expires__gt=timezone.now()).first()
        if lease is not None and (not seen or seen[-1] != lease.expires):
            seen.append(lease.expires)
        return len(seen) > rounds

    wait_for(renewed, 30, f"{rounds} rounds of the monitor of {broker}")


def test_depth_reads_the_backlog_and_drains_as_a_worker_starts(
    service_env: dict[str, str], broker: str
) -> None:
    queue = queue_name("backlog")
    env = fast_env(service_env, CELERY_BROKER_URL=broker, TASKSTORE_WATCH_QUEUES=queue)
    server, port = daphne(env)
    # A server on another broker (the suite's), sharing the database: its monitor reads its own
    # broker's queues, where this one is empty, and must not record that.
    elsewhere, other_port = daphne(fast_env(service_env, CELERY_BROKER_URL=OTHER_BROKER))
    worker = None
    try:
        http(port, "GET", "/api/tasks/")  # the server's monitor starts with its first request
        http(other_port, "GET", "/api/tasks/")
        ids = send_backlog(broker, queue, BACKLOG)
        wait_for(lambda: depth(queue) == BACKLOG, 15, f"the depth to read {BACKLOG}")
        read = QueueRecord.objects.get(name=queue)
        rounds_of_the_monitor_of(OTHER_BROKER, 2)
        row = QueueRecord.objects.get(name=queue)
        assert (row.depth, row.version) == (BACKLOG, read.version), "the other broker's monitor wrote it"
        assert row.broker == ("redis" if broker.startswith("redis") else "amqp")
        assert row.broker_key == brokers.key_of(Connection(broker))

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
        elsewhere.stop()
        delete_queue(broker, queue)
