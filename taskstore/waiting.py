"""``await taskstore.wait(task_id)``: the terminal document of a task, from the channel layer.

The waiter joins the task's channel-layer group first and reads the task once afterwards, so a
task that finished before the call returns at once and one that finishes later is never missed
in between. It then listens; it does not poll. Because channel layers may drop messages, it also
re-reads the task every TASKSTORE_RECONCILE_INTERVAL seconds while it waits, the same safety
check a WebSocket subscription makes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from taskstore import addressing, compat, conf, layer_outages, states
from taskstore.documents import for_viewer, task_document
from taskstore.exceptions import NoChannelLayer
from taskstore.models import TaskRecord

logger = logging.getLogger(__name__)


async def wait(task_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Return the task's terminal document (``SUCCESS``, ``FAILURE``, ``REVOKED``, ``REJECTED``).

    The document is the whole one, staff fields included (this is server code), without the
    internal owner id. Raises ``asyncio.TimeoutError`` (the builtin ``TimeoutError`` since Python 3.11) when ``timeout`` seconds pass first.
    """
    layer = get_channel_layer()
    if layer is None:
        raise NoChannelLayer("taskstore.wait needs a channel layer: configure CHANNEL_LAYERS.")
    channel = await layer.new_channel(prefix="taskstore.wait")
    group = addressing.task_group(task_id)
    join = functools.partial(layer.group_add, group, channel)
    receive = layer_outages.tolerant(functools.partial(layer.receive, channel))
    async with compat.timeout(timeout):
        # A layer that is down delays the answer (the periodic read still finds it), never fails it.
        await layer_outages.one_at_a_time([join()], "wait")
        try:
            return await _listen(receive, join, task_id)
        finally:
            await layer_outages.one_at_a_time([layer.group_discard(group, channel)], "wait")


async def _listen(
    receive: layer_outages.Receive, join: Callable[[], Awaitable[None]], task_id: str
) -> dict[str, Any]:
    interval = conf.reconcile_interval() or None
    while True:
        # Read after joining (and again after each quiet interval): a state committed before
        # the join is seen here, one committed after it arrives as a message.
        document = await _terminal_document(task_id)
        if document is not None:
            return document
        try:
            async with compat.timeout(interval):
                while True:
                    message = await receive()
                    pushed = message.get("document") or {}
                    if (
                        message.get("type") == addressing.MESSAGE_TASK
                        and pushed.get("task_id") == task_id
                        and pushed.get("state") in states.TERMINAL_STATES
                    ):
                        if pushed.get("result_truncated"):
                            break  # the push left the result out: read the whole document
                        return for_viewer(pushed, staff=True)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
            # Quiet for a whole interval: refresh the membership (lost if Redis restarted)
            # and look at the database once.
            await layer_outages.one_at_a_time([join()], "wait")


@database_sync_to_async
def _terminal_document(task_id: str) -> dict[str, Any] | None:
    record = TaskRecord.objects.filter(task_id=task_id, state__in=states.TERMINAL_STATES).first()
    return for_viewer(task_document(record), staff=True) if record is not None else None
