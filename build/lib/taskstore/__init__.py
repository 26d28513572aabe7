"""Live task results for Django and Celery: the store, the recorder and the Python API."""

from __future__ import annotations

from typing import Any

__all__ = ["check_token", "make_token", "owned_by", "wait"]


async def wait(task_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Wait on the channel layer for the task's terminal document and return it.

    Raises ``asyncio.TimeoutError`` (the builtin ``TimeoutError`` since Python 3.11) when ``timeout`` seconds pass first.
    """
    from taskstore.waiting import wait as _wait

    return await _wait(task_id, timeout=timeout)


def __getattr__(name: str) -> Any:
    # Lazy re-exports: importing the package must not import models before apps are ready.
    if name == "owned_by":
        from taskstore.owner import owned_by

        return owned_by
    if name in {"make_token", "check_token"}:
        from taskstore import tokens

        return getattr(tokens, name)
    raise AttributeError(name)
