"""``await taskstore.wait(task_id)``: the terminal document of a task, from the channel layer.

The waiter joins the task's channel-layer group first and reads the task once afterwards, so a
task that finished before the call returns at once and one that finishes later is never missed
in between. It then listens; it does not poll. Because channel layers may drop messages, it also
re-reads the task every TASKSTORE_RECONCILE_INTERVAL seconds while it waits, the same safety
check a WebSocket subscription makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from taskstore import addressing, conf, states
from taskstore.documents import for_viewer, task_document
from taskstore.models import TaskRecord
from taskstore.recorder import MESSAGE_TASK

logger = logging.getLogger(__name__)


class NoChannelLayer(RuntimeError):
    """CHANNEL_LAYERS names no default layer, so there is nothing to wait on."""


async def wait(task_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Return the task's terminal document (``SUCCESS``, ``FAILURE``, ``REVOKED``, ``REJECTED``).

    The document is the whole one, staff fields included (this is server code), without the
    internal owner id. Raises ``TimeoutError`` when ``timeout`` seconds pass first.
    """
    layer = get_channel_layer()
    if layer is None:
        raise NoChannelLayer("taskstore.wait needs a channel layer: configure CHANNEL_LAYERS.")
    channel = await layer.new_channel(prefix="taskstore.wait")
    group = addressing.task_group(task_id)
    async with asyncio.timeout(timeout):
        await layer.group_add(group, channel)
        try:
            return await _listen(layer, channel, group, task_id)
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)


async def _listen(layer: Any, channel: str, group: str, task_id: str) -> dict[str, Any]:
    interval = float(conf.get("TASKSTORE_RECONCILE_INTERVAL")) or None
    while True:
        # Read after joining (and again after each quiet interval): a state committed before
        # the join is seen here, one committed after it arrives as a message.
        document = await _terminal_document(task_id)
        if document is not None:
            return document
        try:
            async with asyncio.timeout(interval):
                while True:
                    message = await layer.receive(channel)
                    pushed = message.get("document") or {}
                    if (
                        message.get("type") == MESSAGE_TASK
                        and pushed.get("task_id") == task_id
                        and pushed.get("state") in states.TERMINAL_STATES
                    ):
                        if pushed.get("result_truncated"):
                            break  # the push left the result out: read the whole document
                        return for_viewer(pushed, staff=True)
        except TimeoutError:
            # Quiet for a whole interval: refresh the membership (lost if Redis restarted)
            # and look at the database once.
            await layer.group_add(group, channel)


@database_sync_to_async
def _terminal_document(task_id: str) -> dict[str, Any] | None:
    record = TaskRecord.objects.filter(task_id=task_id, state__in=states.TERMINAL_STATES).first()
    return for_viewer(task_document(record), staff=True) if record is not None else None
