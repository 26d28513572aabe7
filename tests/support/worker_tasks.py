"""Tasks only the test worker loads (``--include``): misbehaviour the examples don't show."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Task, group, shared_task
from celery.exceptions import Reject

from realtime import tasks as examples


@shared_task(name="tests.unencodable")
def unencodable() -> object:
    """Return a value JSON cannot encode."""
    return object()


class PaymentDeclined(Exception):
    """An application's own exception, with more than one argument."""

    def __init__(self, reason: str, amount: int) -> None:
        super().__init__(reason, amount)
        self.reason = reason
        self.amount = amount


class NeedsTwoArguments(Exception):
    """An exception Celery cannot rebuild: its ``args`` do not fit its ``__init__``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


@shared_task(name="tests.raise_payment_declined")
def raise_payment_declined(reason: str, amount: int) -> None:
    """Raise the application's own exception with two arguments."""
    raise PaymentDeclined(reason, amount)


@shared_task(name="tests.raise_builtin")
def raise_builtin(key: str) -> None:
    """Raise a builtin exception (``KeyError``)."""
    raise KeyError(key)


@shared_task(name="tests.raise_multi_argument")
def raise_multi_argument() -> None:
    """Raise a builtin exception with several arguments of several types."""
    raise ValueError("bad value", 42, ["a", "b"], {"k": None})


@shared_task(name="tests.raise_not_rebuildable")
def raise_not_rebuildable() -> None:
    """Raise an exception whose arguments do not fit its constructor."""
    raise NeedsTwoArguments(7, "out of stock")


@shared_task(name="tests.raise_from_worker_only_module")
def raise_from_worker_only_module() -> None:
    """Raise an exception whose module the process reading the result never imported."""
    from tests.support.worker_only_errors import LedgerLocked

    raise LedgerLocked("ledger 7 is locked")


@shared_task(name="tests.reject_for_good")
def reject_for_good() -> None:
    """Reject the message without requeueing it."""
    raise Reject("rejected", False)


def _gates() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def _run_gated(task: Task, gate: str, value: Any) -> Any:
    """Say the body runs (``<gate>:running``), then wait for the test to open ``gate``."""
    connection = _gates()
    connection.rpush(f"{gate}:running", json.dumps({"retries": task.request.retries, "pid": os.getpid()}))
    opened = connection.blpop([gate], timeout=60)
    if opened is None:
        raise TimeoutError(f"gate {gate} was never opened")
    return value


@shared_task(bind=True, name="tests.gated")
def gated(self: Task, gate: str, value: Any = None) -> Any:
    """Return ``value`` once the test opens ``gate``."""
    return _run_gated(self, gate, value)


@shared_task(bind=True, name="tests.gated_tracked", track_started=True)
def gated_tracked(self: Task, gate: str, value: Any = None) -> Any:
    """As ``tests.gated``, with ``track_started``."""
    return _run_gated(self, gate, value)


@shared_task(bind=True, name="tests.gated_retry", max_retries=1)
def gated_retry(self: Task, gate: str, value: Any = None) -> Any:
    """Retry once (countdown 0), then run as ``tests.gated``."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt fails on purpose"), countdown=0)
    return _run_gated(self, gate, value)


@shared_task(bind=True, name="tests.gated_retry_tracked", max_retries=1, track_started=True)
def gated_retry_tracked(self: Task, gate: str, value: Any = None) -> Any:
    """As ``tests.gated_retry``, with ``track_started``."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first attempt fails on purpose"), countdown=0)
    return _run_gated(self, gate, value)


@shared_task(bind=True, name="tests.gated_progress")
def gated_progress(self: Task, gate: str, value: Any = None) -> Any:
    """Report ``PROGRESS`` ``{"step": 1}``, then run as ``tests.gated``."""
    self.update_state(state="PROGRESS", meta={"step": 1})
    return _run_gated(self, gate, value)


@shared_task(name="tests.ignored", ignore_result=True)
def ignored(x: int, y: int) -> int:
    """Return ``x + y``, asking Celery not to store it."""
    return x + y


@shared_task(name="tests.fail_ignored", ignore_result=True)
def fail_ignored() -> None:
    """Fail, asking Celery not to store the result."""
    raise ValueError("not stored")


@shared_task(name="tests.spawn")
def spawn(n: int) -> str:
    """Send ``add(i, i)`` for i < n and a group of two ``add`` tasks; return ``"spawned"``."""
    for i in range(n):
        examples.add.delay(i, i)
    group(examples.add.s(10, 1), examples.add.s(10, 2)).delay()
    return "spawned"


@shared_task(bind=True, name="tests.replace_with_group")
def replace_with_group(self: Task, n: int) -> Any:
    """Replace this task with a group of ``add(i, i)`` for i < n."""
    return self.replace(group(examples.add.s(i, i) for i in range(n)))


@shared_task(name="tests.total")
def total(values: list[int]) -> int:
    """Return the sum of ``values`` (a chord body)."""
    return sum(values)
