"""Statistics per task name against tasks with known runtimes, waits, failures and retries."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from taskstore.models import TaskRecord
from taskstore.operations import statistics

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    # WhiteNoise warns when collectstatic has not run; these tests serve no static files.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def add_task(name: str, state: str, runtime: float, wait: float, retries: int = 0, ago: float = 60) -> None:
    """A finished task: created, then started ``wait`` s later, done ``runtime`` s after that,
    ``ago`` seconds before now."""
    done = timezone.now() - timedelta(seconds=ago)
    started = done - timedelta(seconds=runtime)
    created = started - timedelta(seconds=wait)
    TaskRecord.objects.create(
        task_id=str(uuid4()),
        task_name=name,
        state=state,
        version=4,
        retries=retries,
        date_created=created,
        date_started=started,
        date_done=done,
        date_updated=done,
    )


@pytest.fixture
def known_tasks() -> None:
    # stats.a: runtimes 1..10 s, waits 0.1..1.0 s, three failures, two retries in all.
    for i in range(1, 11):
        add_task(
            "stats.a", "FAILURE" if i in (2, 5, 9) else "SUCCESS", runtime=i, wait=i / 10, retries=i % 5 == 0
        )
    # stats.b: one task in the last hour, one two hours ago (outside the hour, inside the day).
    add_task("stats.b", "SUCCESS", runtime=0.25, wait=0.002)
    add_task("stats.b", "REVOKED", runtime=4.0, wait=1.0, ago=7200)


def by_name(window: timedelta) -> dict[str, dict]:
    return {row["task_name"]: row for row in statistics.task_statistics(window)}


def test_counts_failure_rate_retries_and_percentiles_over_the_last_hour(known_tasks: None) -> None:
    rows = by_name(timedelta(hours=1))
    a = rows["stats.a"]
    assert (a["count"], a["failed"], a["retries"]) == (10, 3, 2)
    assert a["failure_rate"] == pytest.approx(0.3)
    # percentile_cont: p50 of 1..10 is 5.5; p95 is 1 + 0.95 * 9 = 9.55.
    assert a["runtime_p50"] == pytest.approx(5.5, abs=1e-6)
    assert a["runtime_p95"] == pytest.approx(9.55, abs=1e-6)
    assert a["wait_p50"] == pytest.approx(0.55, abs=1e-6)
    assert a["wait_p95"] == pytest.approx(0.955, abs=1e-6)
    b = rows["stats.b"]
    assert (b["count"], b["failed"], b["runtime_p50"], b["wait_p50"]) == (1, 0, 0.25, 0.002)


def test_a_wider_window_takes_older_tasks_in(known_tasks: None) -> None:
    b = by_name(timedelta(days=1))["stats.b"]
    assert b["count"] == 2
    assert b["runtime_p50"] == pytest.approx(2.125, abs=1e-6)


def test_the_python_fallback_matches_the_database(known_tasks: None) -> None:
    since = timezone.now() - timedelta(days=1)
    in_python = [statistics._shaped(row) for row in statistics._in_python(since)]
    assert in_python == statistics.task_statistics(timedelta(days=1))


def test_the_statistics_api_is_for_staff_and_checks_the_window(known_tasks: None) -> None:
    client = Client()
    assert client.get("/api/ops/stats/").status_code == 403
    client.force_login(User.objects.create_user("stats-staff", is_staff=True))
    body = client.get("/api/ops/stats/?window=24h").json()
    assert body["window"] == "24h"
    assert {row["task_name"] for row in body["tasks"]} >= {"stats.a", "stats.b"}
    answer = client.get("/api/ops/stats/?window=forever")
    assert answer.status_code == 400
    assert answer.json()["error"] == "Unknown window 'forever': use one of 15m, 1h, 24h."
