"""Many threads in several processes write the same transitions in random order: versions stay
1..n with no gap or repeat, nothing goes backwards, and every recorded version is published once.
Run on PostgreSQL and on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskstore import states
from tests.support.concurrency_driver import LIFECYCLE
from tests.support.processes import ROOT, child_env

PROCESSES = 3
THREADS = 4
TASKS = 8


def _run_writers(database_url: str, prefix: str) -> list[dict[str, int]]:
    env = child_env(database_url, None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.concurrency_driver",
                "--threads",
                str(THREADS),
                "--tasks",
                str(TASKS),
                "--prefix",
                prefix,
                "--seed",
                str(n),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _check(rows: list[tuple[str, int, str, dict]], reports: list[dict[str, int]], prefix: str) -> None:
    by_task: dict[str, list[tuple[int, str, dict]]] = {}
    for task_id, version, state, document in rows:
        by_task.setdefault(task_id, []).append((version, state, document))
    assert sorted(by_task) == sorted(f"{prefix}-{i}" for i in range(TASKS))
    for task_id, events in by_task.items():
        events.sort()
        versions = [v for v, _, _ in events]
        assert versions == list(range(1, len(versions) + 1)), f"{task_id}: gap or repeat in {versions}"
        positions = [states.position(s, d["retries"]) for _, s, d in events]
        assert all(a < b or (a == b and s != states.PENDING) for a, b, s in
                   zip(positions, positions[1:], [s for _, s, _ in events][1:], strict=False)), (
            f"{task_id} went backwards: {[s for _, s, _ in events]}"
        )  # fmt: skip
        assert events[-1][1] == states.SUCCESS
        assert events[-1][2]["result"] == 42
        # At most the whole lifecycle, each custom update once per distinct value.
        assert len(events) <= len(LIFECYCLE)
    total_events = len(rows)
    assert sum(r["recorded"] for r in reports) == total_events
    assert sum(r["published"] for r in reports) == total_events


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_on_postgresql(test_database_url: str) -> None:
    from taskstore.models import TaskEvent

    reports = _run_writers(test_database_url, "pg")
    rows = list(
        TaskEvent.objects.filter(task__task_id__startswith="pg-").values_list(
            "task_id", "version", "state", "document"
        )
    )
    _check(rows, reports, "pg")


def test_concurrent_writers_on_sqlite(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'concurrency.sqlite3'}"
    env = child_env(url, None)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stderr
    reports = _run_writers(url, "lite")
    with sqlite3.connect(tmp_path / "concurrency.sqlite3") as db:
        raw = db.execute("SELECT task_id, version, state, document FROM taskstore_taskevent").fetchall()
    rows = [(t, v, s, json.loads(d)) for t, v, s, d in raw]
    _check(rows, reports, "lite")
