"""``/ws/feed/``: every transition of every task the user may see (staff: all; others: their own).

A feed lasts as long as what opened it: when the session ends it closes with 4401, and a staff
feed whose user lost staff rights closes with 4403 (taskstore.sessions).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskstore import addressing
from taskstore.consumers import codes, queries
from taskstore.consumers.base import LiveConsumer
from taskstore.consumers.delivery import TaskStream
from taskstore.consumers.operations import OperationsFeed
from taskstore.documents import for_push
from taskstore.permissions import Viewer, may_see_owned

logger = logging.getLogger(__name__)

# Tasks a feed remembers versions of; beyond this the oldest are forgotten (a forgotten task's
# next update is sent as it comes, with no gap check).
MAX_TRACKED_TASKS = 1000


class FeedConsumer(OperationsFeed, LiveConsumer):
    """Pushes the feed of a logged-in user; anonymous sockets are accepted and closed with 4401.

    Staff feeds also carry workers, queues and control actions (taskstore.consumers.operations).
    """

    frame_types = frozenset({"ping", "control"})

    async def prepare(self) -> None:
        """Join the user's feed (or the staff feed) before the socket is accepted: a task that
        changes once the client sees the socket open reaches it."""
        self.streams: OrderedDict[str, TaskStream] = OrderedDict()
        self.feed_group: str | None = None
        user_id = self.viewer.user_id
        if user_id is None:
            return
        self.opened_at = datetime.now().astimezone()
        # When the last periodic check began (wall clock and monotonic).
        self.checked_wall, self.checked = timezone.now(), time.monotonic()
        self.feed_group = addressing.FEED_STAFF if self.viewer.staff else addressing.feed_user(user_id)
        await self.join(self.feed_group)

    async def opened(self) -> bool:
        """Close an anonymous socket (4401); a user's feed is joined already."""
        if self.feed_group is None:
            await self.shut(codes.CLOSE_UNAUTHENTICATED)
            return False
        return True

    def layer_groups(self) -> list[str]:
        """The one feed group this socket is in."""
        return [self.feed_group] if self.feed_group else []

    def handle_now(self, message: dict[str, Any]) -> bool:
        """The hub's fast path: the next version of a task this feed follows goes out at once;
        a new task, a gap and anything else go to the handlers."""
        if message.get("type") != addressing.MESSAGE_TASK:
            return False
        document = message["document"]
        if not may_see_owned(self.viewer, document.get("owner_id")):
            return True
        stream = self.streams.get(document["task_id"])
        if stream is None:
            return False
        if document["version"] <= stream.sent_version:
            return True
        if document["version"] != stream.sent_version + 1:
            return False
        self.streams.move_to_end(stream.task_id)
        self.push_task(stream, document)
        return True

    async def taskstore_task(self, message: dict[str, Any]) -> None:
        """A recorded transition of a task in this feed."""
        document = message["document"]
        if not may_see_owned(self.viewer, document.get("owner_id")):
            return
        async with self.lock:
            await self.deliver_task(self.stream_for(document), document)

    async def taskstore_group(self, message: dict[str, Any]) -> None:
        """Feeds carry tasks only; group documents are ignored."""

    async def revoked(self, previous: Viewer) -> None:
        """Close: 4401 once the session ended, 4403 when a staff feed's user lost staff rights."""
        await self.shut(codes.CLOSE_UNAUTHENTICATED if self.viewer.anonymous else codes.CLOSE_FORBIDDEN)

    def stream_for(self, document: dict[str, Any]) -> TaskStream:
        """The stream of the document's task, new ones starting where the feed began."""
        task_id = document["task_id"]
        stream = self.streams.get(task_id)
        if stream is not None:
            self.streams.move_to_end(task_id)
            return stream
        # A task created since the feed opened is shown from version 1 (earlier versions that
        # arrive late or not at all are filled); an older one from the version that came first.
        created = parse_time(document.get("date_created"))
        start = 0 if created is not None and created >= self.opened_at else document["version"] - 1
        stream = self.streams[task_id] = TaskStream(task_id, sent_version=start, joined=False)
        if len(self.streams) > MAX_TRACKED_TASKS:
            self.streams.popitem(last=False)
        return stream

    async def reconcile(self) -> None:
        """Refresh the feed's group membership and send versions the layer lost.

        A feed learns of a task from the layer, so while the layer fails it would not hear of
        tasks it has not seen yet: after a failure of its feed group's membership since the
        previous check (a join, or a read of its channel), it also asks the database which of
        its tasks changed since then.
        """
        started_wall, started = timezone.now(), time.monotonic()
        if self.feed_group:
            await self.join(self.feed_group)
        if self.feed_group and self.hub is not None and self.hub.failed_since(self.feed_group, self.checked):
            await self.sweep(self.checked_wall)
        await self.catch_up(dict(self.streams))
        await self.reconcile_operations()
        self.checked_wall, self.checked = started_wall, started

    async def sweep(self, since: datetime) -> None:
        """Send the changes the database holds, at or after ``since``, of this feed's tasks."""
        changed = await queries.updated_since(self.viewer, since, MAX_TRACKED_TASKS)
        async with self.lock:
            for document in changed:
                await self.deliver_task(self.stream_for(document), for_push(document))


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from a document, or None."""
    if not isinstance(value, str):
        return None
    try:
        # Not datetime.fromisoformat: before Python 3.11 it refuses the "Z" documents end with.
        return parse_datetime(value)
    except ValueError:
        return None
