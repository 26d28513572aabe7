"""The example tasks the demo page and the tests run."""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task


@shared_task(name="realtime.tasks.add")
def add(x: Any, y: Any) -> Any:
    """Return ``x + y``."""
    return x + y


@shared_task(bind=True, name="realtime.tasks.progress")
def progress(self: Task, steps: int, delay: float = 0.05) -> int:
    """Report ``PROGRESS`` with ``{"current": i, "total": steps}`` for each step, return steps."""
    for i in range(1, steps + 1):
        if delay:
            time.sleep(delay)
        self.update_state(state="PROGRESS", meta={"current": i, "total": steps})
    return steps


@shared_task(name="realtime.tasks.fail")
def fail(message: str) -> None:
    """Raise ``ValueError(message)``."""
    raise ValueError(message)


@shared_task(name="realtime.tasks.sleep")
def sleep(seconds: float, value: Any = None) -> Any:
    """Sleep ``seconds``, then return ``value``."""
    time.sleep(seconds)
    return value


@shared_task(bind=True, name="realtime.tasks.flaky", max_retries=None)
def flaky(self: Task, times: int) -> str:
    """Retry itself ``times`` times (countdown 0), then return ``"ok"``."""
    if self.request.retries < times:
        try:
            raise RuntimeError(f"attempt {self.request.retries + 1} of {times + 1} failed on purpose")
        except RuntimeError as exc:
            raise self.retry(exc=exc, countdown=0) from exc
    return "ok"
