"""The staff feed's operations frames: workers, queues, control actions, and control itself.

Only staff feeds are in the staff group, so only they receive ``taskstore.worker``,
``taskstore.queue`` and ``taskstore.action`` messages. A worker or queue document is whole (not
a delta), so each key keeps the last version sent: an older or repeated version is dropped,
and one that skips ahead is sent as it is (the versions between are superseded by it). The
periodic check asks the database for newer versions, so a last change the layer lost (a
worker going lost) still arrives.

Staff may also send ``{"type": "control", "action": …, "task_id"|"queue": …}``; anyone else
gets ``forbidden``.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from taskstore.consumers import codes
from taskstore.consumers.base import LiveConsumer
from taskstore.consumers.errors import BadRequest, Conflict, Forbidden, Unavailable
from taskstore.operations import actions
from taskstore.operations.documents import queue_document, worker_document
from taskstore.operations.exceptions import ActionRefused, BadAction, BrokerUnavailable
from taskstore.operations.models import QueueRecord, WorkerRecord


class OperationsFeed(LiveConsumer):
    """FeedConsumer's operations part: handlers for the operations messages and the control frame."""

    async def taskstore_worker(self, message: dict[str, Any]) -> None:
        """A new version of a worker's document."""
        await self.send_operations(codes.WORKER_UPDATE, "hostname", message["document"])

    async def taskstore_queue(self, message: dict[str, Any]) -> None:
        """A new version of a queue's depth."""
        await self.send_operations(codes.QUEUE_UPDATE, "queue", message["document"])

    async def taskstore_action(self, message: dict[str, Any]) -> None:
        """A control action someone took."""
        if self.viewer.staff:
            await self.send_json({"type": codes.ACTION_RECORDED, **message["document"]})

    async def send_operations(self, kind: str, key: str, document: dict[str, Any]) -> None:
        """Send ``document`` unless this socket already sent that version or a later one."""
        if not self.viewer.staff:
            return
        held = self.__dict__.setdefault("operations_held", {})
        ident = (kind, document[key])
        async with self.lock:
            if document["version"] <= held.get(ident, 0):
                return
            held[ident] = document["version"]
            await self.send_json({"type": kind, **document})

    async def reconcile_operations(self) -> None:
        """Send worker and queue versions newer than the ones this socket sent."""
        if not self.viewer.staff or not self.__dict__.get("operations_held"):
            return
        workers, queues = await _current()
        for document in workers:
            await self.send_operations(codes.WORKER_UPDATE, "hostname", document)
        for document in queues:
            await self.send_operations(codes.QUEUE_UPDATE, "queue", document)

    async def control(self, frame: dict[str, Any]) -> None:
        """``{"type": "control", "action": …, "task_id"|"queue": …}``: staff only."""
        if not actions.allowed(self.viewer):
            raise Forbidden("Control actions are for staff.")
        try:
            action, target = actions.parse(frame)
        except BadAction as problem:
            raise BadRequest(str(problem)) from None
        try:
            await database_sync_to_async(actions.perform)(self.scope.get("user"), action, target)
        except ActionRefused as problem:
            raise Conflict(str(problem)) from None
        except BrokerUnavailable as problem:
            raise Unavailable(str(problem)) from None


@database_sync_to_async
def _current() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = timezone.now()
    return (
        [worker_document(w, now) for w in WorkerRecord.objects.all()],
        [queue_document(q) for q in QueueRecord.objects.all()],
    )
