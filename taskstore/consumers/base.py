"""What both consumers share: frame limits, error frames, task delivery without gaps, and the
session check that ends what an ended session granted (taskstore.sessions)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from taskstore import conf, fanout, sessions
from taskstore.consumers import codes, frames, queries, watch
from taskstore.consumers.delivery import TaskStream, counters
from taskstore.consumers.errors import BadRequest, ProtocolError, RateLimited
from taskstore.consumers.limits import FrameLimiter, Verdict
from taskstore.consumers.outbox import Outbox
from taskstore.consumers.ticker import ticker
from taskstore.documents import for_push
from taskstore.operations import pushstats
from taskstore.permissions import Viewer

logger = logging.getLogger(__name__)

# Longest pause between periodic checks after repeated failures (Redis or the database away).
MAX_RECONCILE_BACKOFF = watch.MAX_BACKOFF
# Messages a socket may have waiting for its handlers (each a reference to a message shared by
# the process's sockets); past this the client is too slow, as past its send buffer.
MAX_BACKLOG = 1000


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """A JSON WebSocket consumer with the protocol's limits and a periodic check.

    Client frames are dispatched to the method named after their ``type`` (listed in
    ``frame_types``); channel-layer messages to ``taskstore_task``, ``taskstore_group`` and
    ``taskstore_session``. Subclasses implement ``opened`` (after the accept), ``reconcile``
    (every TASKSTORE_RECONCILE_INTERVAL seconds while the socket is open) and ``revoked`` (the
    session no longer grants what it granted at the handshake).
    """

    frame_types: frozenset[str] = frozenset({"ping"})
    check_interval: float | None = None
    grant: sessions.Grant | None = None

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any
    ) -> None:
        """Serve one socket; however that ends (a disconnect or an error), end its periodic check.

        Unlike Channels' own consumers, a socket has no channel-layer channel of its own: the
        process's hub (taskstore.fanout) holds one membership per group and calls ``offer`` for
        each message, and every frame leaves through the socket's bounded outbox.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = None
        self.hub = fanout.hub_for(self.channel_layer) if self.channel_layer is not None else None
        self.raw_send = send
        self.outbox_limit = conf.send_buffer_bytes()
        self.outbox = Outbox(send, self.outbox_limit, self.too_slow)
        self.base_send = self._queue_event
        self.backlog: deque[dict[str, Any]] | None = None
        self.backlog_task: asyncio.Task[None] | None = None
        self.closing = False
        # Serialises sending between the handlers and the periodic check, so each stream's
        # versions leave in order.
        self.lock = asyncio.Lock()
        try:
            # Channels' await_many_dispatch runs each receive as a task of its own; with one
            # source of messages (the hub calls ``offer`` directly) a plain loop does.
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            self.stop_reconciler()
            if self.backlog_task is not None:
                self.backlog_task.cancel()

    async def _queue_event(self, event: dict[str, Any]) -> None:
        # Every ASGI send goes through the outbox, in order; none of them waits for the client.
        text = event.get("text")
        self.outbox.put(event, len(text.encode()) if text is not None else len(event.get("bytes") or b""))

    def too_slow(self) -> None:
        """The client stopped reading and its frames passed the limit: close it (it resumes with
        ``since``)."""
        if self.closing:
            return
        logger.info("Closing a socket whose client stopped reading (over %s bytes unsent)", self.outbox_limit)
        pushstats.slow_consumer_closed()
        self.closing = True
        self.stop_reconciler()
        if self.backlog is not None:
            self.backlog.clear()
        task = asyncio.ensure_future(self.raw_send({"type": "websocket.close", "code": codes.CLOSE_TOO_SLOW}))
        task.add_done_callback(_retrieve)

    # --- messages from the hub -------------------------------------------------------------------

    def offer(self, message: dict[str, Any]) -> None:
        """Take a message of a group this socket is in (called by the hub; never waits).

        A message that can go out at once (the next version of a stream, nothing else in the
        way) is sent here; any other waits in this socket's backlog for its handler.
        """
        if self.closing:
            return
        if self.backlog is None:
            if not self.lock.locked() and self.handle_now(message):
                return
            self.backlog = deque()
            self.backlog_task = asyncio.ensure_future(self._work_backlog())
        elif len(self.backlog) >= MAX_BACKLOG:
            self.too_slow()
            return
        self.backlog.append(message)

    def handle_now(self, message: dict[str, Any]) -> bool:
        """Handle ``message`` without waiting, if it can be; return whether it was."""
        return False

    async def _work_backlog(self) -> None:
        try:
            while self.backlog and not self.closing:
                message = self.backlog.popleft()
                try:
                    await self.dispatch(message)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("Handling a %r message failed", message.get("type"))
        finally:
            self.backlog = None

    async def connect(self) -> None:
        """Accept the socket and set up its limits."""
        self.viewer = Viewer.of(self.scope.get("user"))
        # What the session granted; checked again periodically and when a signal asks.
        self.grant = sessions.Grant.of(self.scope, self.viewer)
        self.session_lock: asyncio.Lock | None = None  # made by the first check_session
        self.max_frame_bytes = conf.max_frame_bytes()
        self.limiter = FrameLimiter(conf.rate_limit(), conf.rate_burst())
        # Under the lock: what ``prepare`` joins is in place before the client sees the socket
        # open, and messages that arrive meanwhile wait in the backlog until it is.
        async with self.lock:
            await self.prepare()
            await self.accept()
            pushstats.opened()
            self.counted_open = True
            if await self.opened():
                for group in self.session_groups():
                    await self.join(group)
                self.start_checks()
                if self.grant is not None:
                    watch.of_loop(watch.SessionWatch).follow(self.grant, self)

    async def prepare(self) -> None:
        """Called before the socket is accepted (with ``self.lock`` held): join the groups whose
        messages the client must not miss once it sees the socket open."""

    async def opened(self) -> bool:
        """Called once the socket is accepted; return False after closing it."""
        return True

    async def disconnect(self, code: int) -> None:
        """Stop the periodic check and leave every channel-layer group."""
        self.closing = True
        self.stop_reconciler()
        if getattr(self, "counted_open", False):
            self.counted_open = False
            pushstats.closed()
        self.outbox.cancel()
        for group in [*self.layer_groups(), *self.session_groups()]:
            await self.leave(group)

    async def join(self, group: str) -> None:
        """Receive the messages of a channel-layer group (through the process's hub). If the
        layer fails, the hub joins again at its periodic refresh."""
        if self.hub is not None:
            await self.hub.join(group, self)

    async def leave(self, group: str) -> None:
        """Stop receiving the messages of a channel-layer group."""
        if self.hub is not None:
            await self.hub.leave(group, self)

    def start_checks(self) -> None:
        """Schedule the periodic check (every TASKSTORE_RECONCILE_INTERVAL seconds)."""
        interval = conf.reconcile_interval()
        if interval <= 0:
            return
        self.check_interval, self.check_backoff, self.check_retry_at = interval, 0.0, 0.0
        self.check_backoffs = watch.failure_backoffs(interval)
        # Spread the checks of sockets opened together.
        ticker().add(self, self.periodic_check, interval * random.uniform(0.5, 1.0), interval)

    def stop_reconciler(self) -> None:
        """Stop the periodic checks, cancelling this socket's if it runs (from within, it ends on
        its own: see ``closing``)."""
        if getattr(self, "check_interval", None) is not None:
            ticker().discard(self)
        if self.grant is not None:
            watch.of_loop(watch.SessionWatch).unfollow(self.grant, self)

    def layer_groups(self) -> list[str]:
        """The channel-layer groups this socket is in for what it sends."""
        return []

    def session_groups(self) -> list[str]:
        """The group where this socket hears "check your session now", while it holds a grant."""
        return [sessions.user_group(self.grant.user_id)] if self.grant is not None else []

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler for ``message``.

        Channels' own dispatch closes stale database connections before every message, one
        thread hop per live update. The handlers here touch the database only through
        ``database_sync_to_async`` helpers, which do that cleanup themselves, so the hot path
        skips it. Handlers are found by Channels' own rule (``get_handler_name``: the type's dots
        become underscores, as Channels documents); tests/test_library_internals.py checks it.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- client frames -------------------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Check one client frame against the limits, then hand it to its handler."""
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > self.max_frame_bytes:
            await self.shut(codes.CLOSE_FRAME_TOO_LARGE)
            return
        verdict = self.limiter.take()
        if verdict is Verdict.CLOSE:
            await self.shut(codes.CLOSE_FLOODING)
            return
        try:
            if verdict is Verdict.REFUSE:
                raise RateLimited("Too many frames: slow down.")
            frame = self.parse(text_data)
            await getattr(self, frame["type"])(frame)
        except ProtocolError as error:
            await self.send_json(
                {"type": codes.ERROR, "code": error.code, "detail": error.detail, **error.ids}
            )

    def parse(self, text_data: str | None) -> dict[str, Any]:
        """The frame as a dict with a known ``type``, or BadRequest."""
        if text_data is None:
            raise BadRequest("Frames must be JSON text, not binary.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise BadRequest("The frame is not valid JSON.") from None
        if not isinstance(frame, dict):
            raise BadRequest("A frame must be a JSON object with a 'type'.")
        kind = frame.get("type")
        if not isinstance(kind, str) or kind not in self.frame_types:
            allowed = ", ".join(sorted(self.frame_types))
            raise BadRequest(f"Unknown frame type {kind!r}: expected one of {allowed}.")
        return frame

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Send one JSON frame, counted for /metrics (taskstore.operations.pushstats)."""
        pushstats.frame_sent()
        await super().send_json(content, close)

    async def ping(self, frame: dict[str, Any]) -> None:
        """Answer ``ping`` with ``pong``."""
        await self.send_json({"type": codes.PONG})

    async def shut(self, code: int) -> None:
        """Close the socket with ``code`` and ignore whatever the client still sends."""
        self.closing = True
        self.stop_reconciler()
        await self.close(code)

    # --- sending task versions -------------------------------------------------------------------

    async def deliver_task(self, stream: TaskStream, document: dict[str, Any]) -> None:
        """Send a live ``document`` unless already sent, after any versions it skipped.

        Call with ``self.lock`` held.
        """
        version = document["version"]
        if version <= stream.sent_version:
            return
        if stream.sent_version >= 0 and version > stream.sent_version + 1:
            missing = await queries.task_events(stream.task_id, stream.sent_version, version - 1)
            counters["filled"] += len(missing)
            logger.info(
                "Filled versions %d-%d of task %s from the database (%d rows): "
                "the channel layer reordered or dropped them",
                stream.sent_version + 1,
                version - 1,
                stream.task_id,
                len(missing),
            )
            for earlier in missing:
                await self.send_task(stream, for_push(earlier))
        await self.send_task(stream, document)

    async def send_task(self, stream: TaskStream, document: dict[str, Any]) -> None:
        """Send ``document`` (already fit for push) to the client, if it is new to the stream."""
        if document["version"] <= stream.sent_version or self.closing:
            return
        event, size = frames.task_frame(document, self.viewer.staff)
        # Versions read from the database can come many at once (a resume from ``since``): let
        # a reading client take them as fast as it reads, rather than close it for the burst.
        await self.outbox.room(self.outbox_limit // 2)
        self.push_frame(event, size)
        stream.record_sent(document["version"], document["state"])

    def push_task(self, stream: TaskStream, document: dict[str, Any]) -> None:
        """Send the next live version of a stream at once (the hub's fast path)."""
        self.push_frame(*frames.task_frame(document, self.viewer.staff))
        stream.record_sent(document["version"], document["state"])

    def push_frame(self, event: dict[str, Any], size: int) -> None:
        """Queue an encoded frame (a ``websocket.send`` event, see frames) of ``size`` bytes."""
        pushstats.frame_sent()
        self.outbox.put(event, size)

    async def catch_up(self, streams: dict[str, TaskStream]) -> None:
        """Send the versions the database holds beyond what each unfinished stream sent.

        One query for all of them, made without holding the lock so live updates keep flowing;
        only streams found behind are filled, under the lock. This is how a final message the
        layer lost still arrives.

        A stream is filled only up to what the database held at the previous check: a version
        recorded since may still be on its way through the layer, which is far cheaper than
        reading it back for every socket (and under load, checks that raced the layer made it
        slower still: measured in docs/benchmarks.md). A lost version thus arrives within two
        intervals.
        """
        sent = {
            task_id: s.sent_version for task_id, s in streams.items() if not s.done and s.sent_version >= 0
        }
        recorded = await queries.task_versions(list(sent))
        behind = {}
        for task_id, version in recorded.items():
            stream = streams.get(task_id)
            if stream is None:
                continue
            earlier, stream.recorded = stream.recorded, version
            if earlier is not None and min(earlier, version) > sent[task_id]:
                behind[task_id] = min(earlier, version)
        if behind:
            await self.fill(streams, behind)

    async def fill(self, streams: dict[str, TaskStream], behind: dict[str, int]) -> None:
        """Send, under the lock, the recorded versions of each task in ``behind`` up to its
        version that the task's stream in ``streams`` has not sent (live updates may have got
        there first)."""
        async with self.lock:
            for task_id, version in behind.items():
                stream = streams.get(task_id)
                if stream is None or stream.done or version <= stream.sent_version:
                    continue  # gone, or a live update got there first
                missing = await queries.task_events(task_id, stream.sent_version, version)
                counters["reconciled"] += len(missing)
                logger.info("Sent %d versions of task %s found by the periodic check", len(missing), task_id)
                for document in missing:
                    await self.send_task(stream, for_push(document))

    # --- the session check ---------------------------------------------------------------------

    async def taskstore_session(self, message: dict[str, Any]) -> None:
        """A signal asks this user's sockets to check their session now (taskstore.sessions)."""
        grant = self.grant
        if grant is None or self.closing:
            return
        ended = message.get("ended")
        if ended is None:
            await self.check_session()
        elif ended == grant.session_hash:
            # Django sends user_logged_out before it deletes the session: do not look, end.
            await self.check_session(ended=True)

    async def check_session(self, ended: bool = False) -> None:
        """Read the session and the user again (one query); end what they no longer grant."""
        if self.session_lock is None:
            self.session_lock = asyncio.Lock()
        async with self.session_lock:
            grant = self.grant
            if grant is None or self.closing:
                return
            now = Viewer() if ended else await database_sync_to_async(sessions.recheck)(grant)
            if now == self.viewer:
                return
            previous, self.viewer = self.viewer, now
            if now.anonymous:
                logger.info("The session of user %s ended: ending what it granted", grant.user_id)
                self.regrant(None)
                await self.leave(sessions.user_group(grant.user_id))
            else:
                logger.info("User %s lost staff rights: ending what they granted", grant.user_id)
                self.regrant(replace(grant, staff=now.staff))
            await self.revoked(previous)

    def regrant(self, grant: sessions.Grant | None) -> None:
        """Hold ``grant`` (None: nothing) instead of the grant held, and have the process's
        session watch check it instead."""
        sessions_watch = watch.of_loop(watch.SessionWatch)
        if self.grant is not None:
            sessions_watch.unfollow(self.grant, self)
        self.grant = grant
        if grant is not None and not self.closing:
            sessions_watch.follow(grant, self)

    async def revoked(self, previous: Viewer) -> None:
        """The session no longer grants what ``previous`` could see; ``self.viewer`` is what it
        grants now (anonymous once the session ended). End whatever it granted alone."""

    # --- the periodic check ------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Re-join groups and send what the database holds beyond what was sent.

        Runs without ``self.lock``: take it around sending only.
        """

    async def periodic_check(self) -> float:
        """One round of the periodic check (run by the loop's ticker); returns the seconds to the
        next round, 0 once the socket is closing."""
        interval = self.check_interval
        if interval is None or self.closing:  # (None: checks were never started)
            return 0.0
        if time.monotonic() >= self.check_retry_at:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.check_backoff = self.check_backoffs.after(self.check_backoff)
                self.check_retry_at = time.monotonic() + self.check_backoff
                logger.exception(
                    "The periodic subscription check failed; next try in %.1fs", self.check_backoff
                )
            else:
                self.check_backoff = 0.0
        return 0.0 if self.closing else interval


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The close of a socket that is gone fails; nothing else is to be done about it.
    if not task.cancelled() and task.exception() is not None:
        logger.debug("Closing a slow socket failed: %s", task.exception())
