"""Who owns a task: the user of the request that sent it, or whoever code names."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Holds a user, a lazy request.user, or an id: resolved only when a task is actually sent, so a
# request that sends nothing costs no session lookup.
_current_owner: contextvars.ContextVar[Any] = contextvars.ContextVar("taskstore_owner", default=None)

# The message header that carries the owner to the worker, so the tasks a task sends
# (canvas members, chord bodies, retries) belong to the same user.
OWNER_HEADER = "taskstore_owner"
# Set on a task message whose PENDING (or RETRY) this process recorded before it left: the
# task's row exists, so a worker's late RECEIVED must not create it again (taskstore.received).
RECORDED_HEADER = "taskstore_recorded"


def _user_id(user: Any) -> int | None:
    if user is None:
        return None
    if isinstance(user, int):
        return user
    if getattr(user, "is_authenticated", False):
        return int(user.pk)
    return None


@contextmanager
def owned_by(user: Any) -> Iterator[None]:
    """Make ``user`` (a user, a user id, or None) the owner of every task sent in the block."""
    token = _current_owner.set(user)
    try:
        yield
    finally:
        _current_owner.reset(token)


def current_owner_id() -> int | None:
    """The id of the user tasks sent now belong to, if any."""
    owner = _user_id(_current_owner.get())
    if owner is not None:
        return owner
    return _owner_of_running_task()


def _owner_of_running_task() -> int | None:
    from celery import current_task

    # A proxy to the task running in this thread: false when there is none.
    if not current_task:
        return None
    request = current_task.request
    if request is None:
        return None
    value = getattr(request, OWNER_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(OWNER_HEADER)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
