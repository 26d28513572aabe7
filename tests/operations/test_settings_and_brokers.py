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
from taskstore.operations.models import Lease, QueueRecord


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
