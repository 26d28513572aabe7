"""Bench-only app: the least any durable result store can do, one committed row write per state.

Configuration (d) of ``bench/worker_overhead.py`` installs it beside plain Celery (results
ignored, taskstore not installed). The producer writes one row per task before its message leaves
(``before_task_publish``), and each pool child updates that row once the task has run
(``task_postrun``), before it reports the task done: one short prepared statement each, on a
connection of the process's own, committed with PostgreSQL's default durability. Nothing is pushed
and nothing else is recorded (no events, no documents, no lifecycle rule), so (d) / (a) is what a
store that durably records a task's publication and its end, where and when taskstore does, cannot
exceed on this machine: the ceiling of (c) / (a).
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals
from django.apps import AppConfig

TABLE = "bench_durable_floor"
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (task_id text PRIMARY KEY, state text NOT NULL)"
_PUBLISHED = f"INSERT INTO {TABLE} (task_id, state) VALUES (%s, 'PENDING')"
_DONE = (
    f"INSERT INTO {TABLE} (task_id, state) VALUES (%s, 'SUCCESS')"
    " ON CONFLICT (task_id) DO UPDATE SET state = excluded.state"
)

_connection: Any = None
_connection_pid = 0


def _execute(statement: str, task_id: str) -> None:
    """Run ``statement`` for ``task_id`` in autocommit (each a durable commit), prepared."""
    global _connection, _connection_pid
    if _connection is None or _connection_pid != os.getpid():
        import psycopg

        # A prefork child must not share its parent's socket.
        _connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        _connection_pid = os.getpid()
    _connection.execute(statement, (task_id,), prepare=True)


def on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The producer's row, before the message leaves."""
    _execute(_PUBLISHED, (headers or {})["id"])


def on_postrun(task_id: str = "", **_: Any) -> None:
    """The task's end, in the pool child, before it reports the task done."""
    _execute(_DONE, task_id)


class DurableFloorConfig(AppConfig):
    """Connects the two writers when Django is ready."""

    name = "bench.durable_floor"
    label = "bench_durable_floor"
    verbose_name = "Bench: durable floor"

    def ready(self) -> None:
        """Connect the receivers (weak=False: they live as long as the process)."""
        signals.before_task_publish.connect(on_publish, weak=False, dispatch_uid="bench.floor")
        signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="bench.floor")
