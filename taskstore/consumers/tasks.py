"""``/ws/tasks/``: task and group subscriptions, many on one socket (docs/protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from taskstore import addressing, conf, tokens
from taskstore.consumers import codes, frames, queries, watch
from taskstore.consumers.base import LiveConsumer
from taskstore.consumers.delivery import GroupStream, TaskStream, counters
from taskstore.consumers.errors import BadRequest, Forbidden, TooManySubscriptions
from taskstore.documents import for_push
from taskstore.permissions import Viewer, may_see_owned, shown_group, valid_id

logger = logging.getLogger(__name__)

NOT_VISIBLE = "No such {kind}, or you may not see it."
SESSION_ENDED = (
    "The session that let you see this {kind} ended or lost the rights to it: log in again, "
    "or subscribe with the {kind}'s token."
)


class TaskConsumer(LiveConsumer):
    """Subscriptions to tasks and groups, by id, with ``since`` and tokens."""

    frame_types = frozenset({"subscribe", "unsubscribe", "ping"})

    async def opened(self) -> bool:
        """Start with no subscriptions."""
        self.task_streams: dict[str, TaskStream] = {}
        self.group_streams: dict[str, GroupStream] = {}
        # Checks the unfinished task streams against the database, for all the process's
        # sockets at once (this socket's own check covers its task groups' documents).
        self.watch = watch.of_loop(watch.TaskWatch)
        return True

    def stop_reconciler(self) -> None:
        """Stop the periodic checks of this socket and of its task streams."""
        super().stop_reconciler()
        for task_id in getattr(self, "task_streams", ()):
            self.watch.unfollow(task_id, self)

    def layer_groups(self) -> list[str]:
        """The groups of every task still running and every group subscribed."""
        return [addressing.task_group(t) for t, s in self.task_streams.items() if s.joined] + [
            addressing.group_channel_group(g) for g in self.group_streams
        ]

    # --- client frames -------------------------------------------------------------------------

    async def subscribe(self, frame: dict[str, Any]) -> None:
        """Subscribe to a task (optionally ``since`` a version) or a group."""
        kind, identifier = target(frame)
        ids = {f"{kind}_id": identifier}
        token = frame.get("token")
        if token is not None and not isinstance(token, str):
            raise BadRequest("'token' must be a string.", **ids)
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise BadRequest("'since' must be a whole number, 0 or more.", **ids)
        held = self.task_streams if kind == "task" else self.group_streams
        if (
            identifier not in held
            and len(self.task_streams) + len(self.group_streams) >= conf.max_subscriptions()
        ):
            raise TooManySubscriptions(
                "This socket holds the most subscriptions allowed: unsubscribe from some first.", **ids
            )
        async with self.lock:
            if kind == "task":
                await self._subscribe_task(identifier, token, since)
            else:
                await self._subscribe_group(identifier, token)

    async def _subscribe_task(self, task_id: str, token: str | None, since: int | None) -> None:
        group = addressing.task_group(task_id)
        # Join before reading: a transition committed after the read is then sure to arrive
        # through the layer, and one committed before it is in what the read returns. If the
        # layer is down the subscription still opens from the database; the periodic check
        # joins later and sends what the layer missed.
        await self.join(group)
        opening = await queries.open_task(self.viewer, task_id, token, since)
        if opening is None:
            if task_id not in self.task_streams:
                await self.leave(group)
            raise Forbidden(NOT_VISIBLE.format(kind="task"), task_id=task_id)
        # Subscribing again starts the subscription afresh.
        stream = self.task_streams[task_id] = TaskStream(
            task_id, by_token=tokens.check_token(task_id, token), owner_id=opening.owner_id
        )
        for document in opening.documents:
            await self.send_task(stream, for_push(document))
        stream.sent_version, stream.done = opening.version, opening.done
        if not stream.done and not self.closing:
            self.watch.follow(task_id, self)

    async def _subscribe_group(self, group_id: str, token: str | None) -> None:
        group = addressing.group_channel_group(group_id)
        await self.join(group)
        document = await queries.open_group(self.viewer, group_id, token)
        if document is None:
            if group_id not in self.group_streams:
                await self.leave(group)
            raise Forbidden(NOT_VISIBLE.format(kind="group"), group_id=group_id)
        stream = self.group_streams[group_id] = GroupStream(
            group_id,
            by_token=tokens.check_token(group_id, token, kind="group"),
            owner_id=document.get("owner_id"),
        )
        await self.send_group(stream, document)

    async def unsubscribe(self, frame: dict[str, Any]) -> None:
        """End a task or group subscription (a no-op if there is none)."""
        kind, identifier = target(frame)
        async with self.lock:
            if kind == "task":
                stream = self.task_streams.pop(identifier, None)
                self.watch.unfollow(identifier, self)
                if stream is None or not stream.joined:
                    return
                group = addressing.task_group(identifier)
            else:
                if self.group_streams.pop(identifier, None) is None:
                    return
                group = addressing.group_channel_group(identifier)
            await self.leave(group)

    # --- channel-layer messages ------------------------------------------------------------------

    def handle_now(self, message: dict[str, Any]) -> bool:
        """The hub's fast path: a task's next version goes out at once; a version that skips
        ahead (a gap to fill from the database) and anything else go to the handlers."""
        if message.get("type") != addressing.MESSAGE_TASK:
            return False
        document = message["document"]
        stream = self.task_streams.get(document["task_id"])
        if stream is None or document["version"] <= stream.sent_version:
            return True  # not followed here, or already sent
        if document["version"] != stream.sent_version + 1:
            return False
        self.push_task(stream, document)
        return True

    async def taskstore_task(self, message: dict[str, Any]) -> None:
        """A recorded transition of a task (pushed by the recorder after its commit)."""
        document = message["document"]
        # The stream is looked up under the lock: a message that waited for it (in the backlog,
        # while a subscribe held the lock) must find the stream that subscribe opened.
        async with self.lock:
            stream = self.task_streams.get(document["task_id"])
            if stream is not None:
                await self.deliver_task(stream, document)

    async def taskstore_group(self, message: dict[str, Any]) -> None:
        """A group's new document (one of its members changed state)."""
        document = message["document"]
        async with self.lock:
            stream = self.group_streams.get(document["group_id"])
            if stream is not None:
                await self.send_group(stream, document)

    async def send_group(self, stream: GroupStream, document: dict[str, Any]) -> None:
        """Send a group document unless an equal or newer version went out already."""
        if document["version"] <= stream.sent_version:
            return
        await self.outbox.room(self.outbox_limit // 2)
        self.push_frame(*frames.text_frame({"type": codes.GROUP_UPDATE, **shown_group(document)}))
        stream.sent_version = document["version"]

    # --- the session ended, or lost staff rights -----------------------------------------------

    async def revoked(self, previous: Viewer) -> None:
        """End, each with a ``forbidden`` error frame, the subscriptions the session granted and
        grants no more; those opened with a valid token go on (shown as ``self.viewer`` sees them)."""
        async with self.lock:
            tasks = [s for s in self.task_streams.values() if not self.still_granted(s)]
            groups = [s for s in self.group_streams.values() if not self.still_granted(s)]
            for task in tasks:
                del self.task_streams[task.task_id]
                self.watch.unfollow(task.task_id, self)
            for group in groups:
                del self.group_streams[group.group_id]
            for task in tasks:
                detail = SESSION_ENDED.format(kind="task")
                await self.send_json(self.forbidden_frame(detail, task_id=task.task_id))
            for group in groups:
                detail = SESSION_ENDED.format(kind="group")
                await self.send_json(self.forbidden_frame(detail, group_id=group.group_id))
        await self.memberships(
            discard=[t.task_id for t in tasks if t.joined], discard_groups=[g.group_id for g in groups]
        )

    def still_granted(self, stream: TaskStream | GroupStream) -> bool:
        """Whether the socket may still see what ``stream`` shows."""
        return stream.by_token or may_see_owned(self.viewer, stream.owner_id)

    @staticmethod
    def forbidden_frame(detail: str, **ids: str) -> dict[str, Any]:
        """The ``error`` frame that ends a subscription."""
        return {"type": codes.ERROR, "code": codes.FORBIDDEN, "detail": detail, **ids}

    # --- the periodic check ----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Leave the groups of finished tasks, and send the group documents the layer lost.

        The process's hub re-joins the groups its sockets follow (channels-redis keeps
        memberships in Redis: a restart loses them and ``group_expiry`` ends them), and its
        watch (taskstore.consumers.watch) fills the task streams the layer left behind; what
        is left here is this socket's own. None of it holds the lock, so live updates are not
        held up by it.
        """
        finished = [s for s in self.task_streams.values() if s.done and s.joined]
        if finished:
            for stream in finished:
                self.watch.unfollow(stream.task_id, self)
            await self.memberships(discard=[s.task_id for s in finished])
            for stream in finished:
                stream.joined = False
            # A subscription that began afresh while those calls were in flight.
            await self.memberships(
                add=[s.task_id for s in finished if self.task_streams.get(s.task_id, s) is not s]
            )
        if not self.group_streams:
            return
        newer = await queries.newer_groups({g: s.sent_version for g, s in self.group_streams.items()})
        if newer:
            async with self.lock:
                for document in newer:
                    group_stream = self.group_streams.get(document["group_id"])
                    if group_stream is not None:
                        counters["reconciled"] += 1
                        await self.send_group(group_stream, document)

    async def fill_recorded(self, behind: dict[str, int]) -> None:
        """Send the recorded versions of each task in ``behind``, up to its version, that this
        socket has not sent (asked by the watch)."""
        await self.fill(self.task_streams, behind)

    async def memberships(
        self,
        add: Iterable[str] = (),
        discard: Iterable[str] = (),
        discard_groups: Iterable[str] = (),
    ) -> None:
        """Join tasks' channel-layer groups and leave tasks' and task groups', one call at a time.

        Through the process's hub: joining a group this process is in already costs no layer
        call. Failures are logged, not raised: what follows the call must still run.
        """
        for task_id in add:
            await self.join(addressing.task_group(task_id))
        for task_id in discard:
            await self.leave(addressing.task_group(task_id))
        for group_id in discard_groups:
            await self.leave(addressing.group_channel_group(group_id))


def target(frame: dict[str, Any]) -> tuple[str, str]:
    """The ``("task" | "group", id)`` a subscribe or unsubscribe frame names."""
    task_id, group_id = frame.get("task_id"), frame.get("group_id")
    if (task_id is None) == (group_id is None):
        raise BadRequest("Name exactly one of 'task_id' and 'group_id'.")
    kind, identifier = ("task", task_id) if task_id is not None else ("group", group_id)
    if not isinstance(identifier, str) or not valid_id(identifier):
        raise BadRequest(
            f"Malformed {kind} id: a string of 1-255 characters without spaces or control characters."
        )
    return kind, identifier
