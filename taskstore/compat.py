"""What differs between the Python and Celery versions taskstore supports (docs/development.md,
"Version matrix")."""

from __future__ import annotations

import sys
from typing import Any

from celery.app.task import Context

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # asyncio.timeout arrived in 3.11; async-timeout is the same API before it.
    from async_timeout import timeout

__all__ = ["get_actual_ignore_result", "timeout"]


def _actual_ignore_result(task: Any, request: Any) -> bool:
    """Whether Celery ignores the result of this run of ``task``: the request's own
    ``ignore_result`` (``apply_async(ignore_result=…)``) when it set one, else the task's option.

    The rule of ``celery.app.task.get_actual_ignore_result`` (Celery 5.7), for Celery 5.5 and 5.6.
    """
    if request is None:
        return bool(task.ignore_result)
    actual = getattr(request, "ignore_result", None)
    # Context defines ignore_result = False on the class: only a value set on the request counts.
    if isinstance(request, Context) and "ignore_result" not in request.__dict__:
        actual = None
    return bool(actual if actual is not None else task.ignore_result)


try:
    from celery.app.task import get_actual_ignore_result
except ImportError:  # Celery < 5.7
    get_actual_ignore_result = _actual_ignore_result
