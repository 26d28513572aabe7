"""The operations settings' rules, and the honest "unknown" depth of a transport that cannot tell."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone
from kombu import Connection

from taskstore import conf
from taskstore.operations import brokers, monitor
from taskstore.operations.models import Lease, QueueRecord, WorkerRecord


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"TASKSTORE_WORKER_HEARTBEAT": 10.0, "TASKSTORE_WORKER_LOST_AFTER": 15.0},
            "TASKSTORE_WORKER_LOST_AFTER must be more than twice TASKSTORE_WORKER_HEARTBEAT (15.0 <= 2 * 10.0)",
        ),
        ({"TASKSTORE_METRICS_TOKEN": "short"}, "TASKSTORE_METRICS_TOKEN must be None or a string of 16"),
        ({"TASKSTORE_WATCH_QUEUES": "celery"}, "TASKSTORE_WATCH_QUEUES must be a list of queue names"),
        ({"TASKSTORE_MONITOR_INTERVAL": 0}, "TASKSTORE_MONITOR_INTERVAL must be a number, 0.1 or more"),
    ],
)
def test_a_bad_operations_setting_is_named(overrides: dict[str, object], message: str) -> None:
    with override_settings(**overrides):
        problems = conf.problems()
    assert any(p.startswith(message) for p in problems), problems


def test_the_defaults_pass() -> None:
    assert conf.problems() == []


def test_a_transport_that_cannot_count_reads_unknown(tmp_path: Path) -> None:
    folder = str(tmp_path)
    connection = Connection(
        "filesystem://", transport_options={"data_folder_in": folder, "data_folder_out": folder}
    )
    with mock.patch.object(brokers.current_app, "connection_for_read", return_value=connection):
        transport, depths = brokers.read_depths(["celery", "other"])
    assert transport == "filesystem"
    assert depths == {"celery": None, "other": None}


@pytest.mark.django_db
@override_settings(TASKSTORE_WATCH_QUEUES=["watched-a", "watched-b"])
def test_a_watched_queue_whose_row_was_deleted_is_back_on_the_list_the_next_round() -> None:
    """Another process reads the depths (it holds the lease) and knows this process's watched
    queues only from their rows: a deleted row is put back by this process's next round."""
    Lease.objects.create(
        name=monitor.lease_name(), holder="elsewhere", expires=timezone.now() + timedelta(minutes=5)
    )
    assert monitor.tick() is False
    QueueRecord.objects.filter(name="watched-a").delete()
    assert "watched-a" not in QueueRecord.objects.values_list("name", flat=True)
    monitor.tick()
    assert {"watched-a", "watched-b"} <= set(QueueRecord.objects.values_list("name", flat=True))
    assert "watched-a" in brokers.queue_names()


OTHER_BROKER = "0123456789abcdef"  # another broker's key: processes on it share this database


def other_monitor_lease(expires_in: timedelta) -> Lease:
    return Lease.objects.create(
        name=brokers.LEASE_PREFIX + OTHER_BROKER, holder="elsewhere", expires=timezone.now() + expires_in
    )


def other_worker(queue: str) -> WorkerRecord:
    now = timezone.now()
    return WorkerRecord.objects.create(
        hostname="w@elsewhere", queues=[queue], broker_key=OTHER_BROKER, counted_until=now, started=now,
        last_heartbeat=now, expires=now + timedelta(minutes=5), date_updated=now,
    )  # fmt: skip


@pytest.mark.django_db
@override_settings(TASKSTORE_WATCH_QUEUES=["shared-name"])
def test_a_queue_another_brokers_live_monitor_reads_is_left_to_it() -> None:
    """Two brokers, one database: each broker's monitor reads its own queues only, so the two
    never write one row in turn (the backlog on one broker, an empty queue on the other)."""
    mine = brokers.broker_key()
    lease = other_monitor_lease(timedelta(minutes=5))
    now = timezone.now()
    QueueRecord.objects.create(
        name="shared-name", depth=5, broker="redis", broker_key=OTHER_BROKER, version=3, date_updated=now
    )
    other_worker("their-queue")

    names = brokers.queue_names()
    assert "shared-name" not in names, "a queue the other broker's live monitor reads"
    assert "their-queue" not in names, "a queue only a worker of the other broker consumes"
    brokers.register_watched()
    brokers.refresh()
    row = QueueRecord.objects.get(name="shared-name")
    assert (row.broker_key, row.depth, row.version) == (OTHER_BROKER, 5, 3)
    assert not QueueRecord.objects.filter(name="their-queue").exists()
    # Taken between the list and the write: the write leaves it too.
    assert brokers.save("shared-name", "memory", 0, mine, brokers.read_elsewhere(mine)) is None
    assert QueueRecord.objects.get(name="shared-name").depth == 5

    # Once the other broker's monitor is gone (its lease expired), this broker reads the queue it
    # watches, and takes the row.
    lease.expires = timezone.now() - timedelta(seconds=1)
    lease.save()
    assert "shared-name" in brokers.queue_names()
    brokers.refresh()
    row = QueueRecord.objects.get(name="shared-name")
    assert (row.broker_key, row.depth, row.version) == (mine, 0, 4)


@pytest.mark.django_db
@override_settings(TASKSTORE_WATCH_QUEUES=["from-before"])
def test_a_row_from_before_brokers_were_recorded_is_claimed_by_the_broker_that_watches_it() -> None:
    QueueRecord.objects.create(name="from-before", depth=2, broker="redis", date_updated=timezone.now())
    other_monitor_lease(timedelta(minutes=5))
    brokers.register_watched()
    assert QueueRecord.objects.get(name="from-before").broker_key == brokers.broker_key()
    assert "from-before" in brokers.queue_names()
