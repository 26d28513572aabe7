"""The two result backends the conformance tests hold side by side.

Each scenario runs on a :class:`Target`: a Celery app whose result backend is one of them, and the
queue of a real prefork worker storing results there.

- ``taskstore``: the example project's app (``taskstore.backend:DatabaseBackend``) and the
  session's ``worker``;
- ``redis``: an app with Celery's Redis result backend and a worker of its own (its queue and
  ``--result-backend``), the reference a drop-in must match.

Tasks are sent by name, so the test process imports nothing the worker alone knows. Tasks that
block wait on a *gate*: they push ``{"retries", "pid"}`` to ``<gate>:running`` and run on once the
test pushes to ``<gate>``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import redis
from celery import Celery
from celery.result import AsyncResult

from tests.support.processes import ManagedProcess

REDIS_QUEUE = f"conformance-redis-{uuid4().hex[:8]}"


@dataclass
class Target:
    """A Celery app whose result backend is under test, and the queue its worker reads."""

    name: str
    app: Celery
    queue: str | None

    def send(self, task: str, *args: Any, **options: Any) -> AsyncResult:
        """Send ``task`` by name to this target's worker."""
        if self.queue:
            options.setdefault("queue", self.queue)
        return self.app.send_task(task, args=args, **options)

    def signature(self, task: str, *args: Any, **options: Any) -> Any:
        """A signature of ``task`` (by name) bound to this target's app and queue."""
        if self.queue:
            options.setdefault("queue", self.queue)
        return self.app.signature(task, args=args, options=options)

    def result(self, task_id: str) -> AsyncResult:
        """An ``AsyncResult`` read through this target's backend."""
        return self.app.AsyncResult(task_id)


def redis_app(broker_url: str, result_url: str) -> Celery:
    """An app storing results in Celery's Redis backend (never Celery's current app)."""
    app = Celery("conformance-redis", broker=broker_url, backend=result_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=REDIS_QUEUE,
    )
    return app


def redis_backend_worker(env: dict[str, str], result_url: str) -> ManagedProcess:
    """A prefork worker (one child) storing results in Redis, on :data:`REDIS_QUEUE`.

    :data:`REDIS_QUEUE` is its default queue, so what it sends itself (children, a chord's
    body, ``celery.accumulate``) stays with it too.
    """
    args = [
        str(Path(sys.executable).parent / "celery"), "-A", "realtime", "worker", "--pool=prefork",
        "--concurrency=1", "--loglevel=INFO", "--without-mingle", "--without-gossip",
        "--prefetch-multiplier=1", "-Q", REDIS_QUEUE, "--include=tests.support.worker_tasks",
        # A node name of its own: control replies (inspect) from two celery@host are an error.
        "-n", f"{REDIS_QUEUE}@%h",
    ]  # fmt: skip
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "tests.support.redis_results_settings",
        "TASKSTORE_TEST_RESULT_BACKEND": result_url,
        "TASKSTORE_TEST_DEFAULT_QUEUE": REDIS_QUEUE,
    }
    proc = ManagedProcess("celery-redis-results", args, env).start(ready=r"@\S+ ready\.")
    assert "results:     redis://" in proc.output()
    return proc


class Gates:
    """Opens the gates the gated test tasks wait on."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def new(self) -> str:
        """A fresh gate name."""
        return f"gate-{uuid4().hex}"

    def running(self, gate: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until a task behind ``gate`` runs; return what it said (``retries``, ``pid``)."""
        popped = self.redis.blpop([f"{gate}:running"], timeout=timeout)
        if popped is None:
            raise AssertionError(f"Timed out after {timeout}s waiting for a task behind {gate} to run")
        return dict(json.loads(popped[1]))

    def open(self, gate: str) -> None:
        """Let the task behind ``gate`` finish."""
        self.redis.rpush(gate, "open")

    def close(self) -> None:
        """Drop the connection."""
        self.redis.close()


def settled(since: datetime) -> bool:
    """Whether every task recorded since ``since`` ended and its group caught up with it.

    The recorder gives a member's group its next version just after the member's own write, so
    a group whose row is older than its newest member is still being written to.
    """
    from taskstore import states
    from taskstore.models import GroupRecord, TaskRecord

    rows = TaskRecord.objects.filter(date_created__gte=since)
    if rows.exclude(state__in=states.TERMINAL_STATES).exists():
        return False
    newest: dict[str, datetime] = {}
    for group_id, updated in rows.exclude(group_id=None).values_list("group_id", "date_updated"):
        newest[group_id] = max(updated, newest.get(group_id, updated))
    groups = dict(
        GroupRecord.objects.filter(group_id__in=list(newest)).values_list("group_id", "date_updated")
    )
    return all(group_id in groups and groups[group_id] >= updated for group_id, updated in newest.items())
