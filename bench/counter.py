"""Bench-only app: counts finished tasks into Redis, identically in every configuration.

Each configuration of ``bench/worker_overhead.py`` installs this app, so every task pays the
same extra Redis round trip (one ``INCR`` in ``task_postrun``). The first and the last
completion stamp their wall-clock time, and each pushes to a list the bench blocks on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import signals
from django.apps import AppConfig

DONE_KEY = "bench:done"
FIRST_KEY = "bench:first"
LAST_KEY = "bench:last"
FINISHED_KEY = "bench:finished"
BEGAN_KEY = "bench:began"

_client: redis.Redis | None = None
_client_pid = 0


def _redis() -> redis.Redis:
    """One client per process: a prefork child must not share its parent's socket."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
        _client_pid = os.getpid()
    return _client


def on_postrun(**_: Any) -> None:
    """Count one finished task; stamp the first and the last."""
    client = _redis()
    done = client.incr(DONE_KEY)
    if done == 1:
        client.set(FIRST_KEY, repr(time.time()))
        client.rpush(BEGAN_KEY, done)
    if done == int(os.environ["BENCH_TASKS"]):
        client.set(LAST_KEY, repr(time.time()))
        client.rpush(FINISHED_KEY, done)


class CounterConfig(AppConfig):
    """Connects the counting receiver when Django is ready."""

    name = "bench.counter"
    label = "bench_counter"
    verbose_name = "Bench counter"

    def ready(self) -> None:
        """Connect ``task_postrun`` (weak=False: the receiver lives as long as the process)."""
        signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="bench.counter")
