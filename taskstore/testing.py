"""Helpers for a project's own tests of code that sends tasks (docs/install.md, "Testing").

* :func:`recorded_documents` collects the task documents recorded in a block, in order: with
  ``CELERY_TASK_ALWAYS_EAGER`` a test sees each state its tasks went through.
* :func:`subscription` opens a task subscription on taskstore's consumer through Channels'
  ``WebsocketCommunicator``, the way a browser would, and reads its frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import TestCase

from taskstore import conf, states
from taskstore.notices import task_recorded

__all__ = ["Subscription", "recorded_documents", "subscription"]


@contextmanager
def recorded_documents(task_id: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """Collect the documents of the transitions recorded in the block (of ``task_id`` only, if
    given), in the order they were recorded.

    Inside a test's transaction (Django's ``TestCase``, pytest-django's ``db``) nothing commits,
    so the block runs the on-commit callbacks itself as it ends, as Django's
    ``captureOnCommitCallbacks(execute=True)`` does; the list is complete after the block.
    """
    collected: list[dict[str, Any]] = []

    def collect(sender: Any, document: dict[str, Any], **_: Any) -> None:
        if task_id is None or document["task_id"] == task_id:
            collected.append(document)

    task_recorded.connect(collect, weak=False)
    try:
        with TestCase.captureOnCommitCallbacks(execute=True):
            yield collected
    finally:
        task_recorded.disconnect(collect)


class Subscription:
    """A task subscription over a connected ``WebsocketCommunicator``."""

    def __init__(self, communicator: WebsocketCommunicator, task_id: str) -> None:
        self.communicator = communicator
        self.task_id = task_id

    async def next_frame(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame the server sends (raises ``asyncio.TimeoutError`` after ``timeout``)."""
        frame: dict[str, Any] = await self.communicator.receive_json_from(timeout=timeout)
        return frame

    async def until_done(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The ``task.update`` documents up to and including a terminal state.

        An ``error`` frame (e.g. ``forbidden``) raises ``AssertionError`` with its detail.
        """
        documents = []
        while True:
            frame = await self.next_frame(timeout)
            if frame.get("type") == "error":
                raise AssertionError(f"the subscription failed: {frame.get('code')}: {frame.get('detail')}")
            if frame.get("type") != "task.update":
                continue
            documents.append(frame)
            if frame["state"] in states.TERMINAL_STATES:
                return documents


@asynccontextmanager
async def subscription(
    task_id: str, *, user: Any = None, token: str | None = None, since: int | None = None
) -> AsyncIterator[Subscription]:
    """Connect to taskstore's task consumer as ``user`` (anonymous by default) and subscribe to
    ``task_id`` (with ``token`` and ``since`` when given). Disconnects as the block ends.

    Needs a channel layer that reaches the code under test: in tests, usually
    ``{"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}``.
    """
    from taskstore.consumers import TaskConsumer

    communicator = WebsocketCommunicator(TaskConsumer.as_asgi(), conf.websocket_path("tasks"))
    communicator.scope["user"] = user if user is not None else AnonymousUser()
    connected, code = await communicator.connect()
    if not connected:
        raise AssertionError(f"the socket was refused (close code {code})")
    try:
        frame: dict[str, Any] = {"type": "subscribe", "task_id": task_id}
        if token is not None:
            frame["token"] = token
        if since is not None:
            frame["since"] = since
        await communicator.send_json_to(frame)
        yield Subscription(communicator, task_id)
    finally:
        await communicator.disconnect()
