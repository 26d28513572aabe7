"""The WebSocket protocol in-process (Channels' communicator, in-memory layer, PostgreSQL):
bad input, limits, the subscribe race, gap filling and the periodic check."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from taskstore import addressing, fanout
from taskstore.consumers import codes, queries
from taskstore.consumers.feed import FeedConsumer
from taskstore.consumers.tasks import TaskConsumer
from taskstore.publisher import publisher
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token
from tests.support.processes import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    """Every test here on a fresh in-memory channel layer."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("staff", is_staff=True)


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@asynccontextmanager
async def socket(
    user: Any = None, consumer: Any = TaskConsumer, path: str = "/ws/tasks/"
) -> AsyncIterator[WebsocketCommunicator]:
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user or AnonymousUser()
    connected, _ = await communicator.connect()
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def frames_until(
    communicator: WebsocketCommunicator, done: Callable[[dict[str, Any]], bool], timeout: float = 5
) -> list[dict[str, Any]]:
    """Frames received until one satisfies ``done`` (included)."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if done(frame):
            return frames


async def still_serving(communicator: WebsocketCommunicator) -> None:
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}


def transitions(task_id: str, owner_id: int | None = None, steps: int = 3) -> list[Transition]:
    name = "realtime.tasks.progress"
    return [
        Transition(
            task_id=task_id, state="PENDING", task_name=name, owner_id=owner_id, args=[steps], kwargs={}
        ),
        Transition(task_id=task_id, state="RECEIVED", task_name=name, worker="celery@test"),
        Transition(task_id=task_id, state="STARTED", task_name=name, worker="celery@test"),
        *(
            Transition(task_id=task_id, state="PROGRESS", progress={"current": i, "total": steps})
            for i in range(1, steps + 1)
        ),
        Transition(task_id=task_id, state="SUCCESS", result=steps),
    ]


record_async = sync_to_async(record)


def losing_its_end(monkeypatch: pytest.MonkeyPatch, settings: Any) -> tuple[str, list[Transition]]:
    """A task and its transitions, whose SUCCESS will be lost on its way to the layer: only the
    periodic check (every 0.2 s here) can deliver it."""
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.2
    task_id = str(uuid4())
    real_publish = publisher.publish
    monkeypatch.setattr(
        publisher,
        "publish",
        lambda messages: real_publish([m for m in messages if m[1]["document"]["state"] != "SUCCESS"]),
    )
    return task_id, transitions(task_id, steps=1)


async def test_ping_answers_pong() -> None:
    async with socket() as ws:
        await still_serving(ws)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"no": "type"}),
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe"}),
        json.dumps({"type": "subscribe", "task_id": "a", "group_id": "b"}),
        json.dumps({"type": "subscribe", "task_id": ""}),
        json.dumps({"type": "subscribe", "task_id": 12}),
        json.dumps({"type": "subscribe", "task_id": "has space"}),
        json.dumps({"type": "subscribe", "task_id": "x" * 256}),
        json.dumps({"type": "subscribe", "task_id": "t", "since": "3"}),
        json.dumps({"type": "subscribe", "task_id": "t", "since": 1.5}),
        json.dumps({"type": "subscribe", "task_id": "t", "since": True}),
        json.dumps({"type": "subscribe", "task_id": "t", "since": -1}),
        json.dumps({"type": "subscribe", "task_id": "t", "token": 5}),
        json.dumps({"type": "unsubscribe", "group_id": ["g"]}),
    ],
)
async def test_bad_input_gets_bad_request_and_the_socket_stays_usable(frame: str) -> None:
    async with socket() as ws:
        await ws.send_to(text_data=frame)
        reply = await ws.receive_json_from()
        assert reply["type"] == "error"
        assert reply["code"] == codes.BAD_REQUEST
        assert reply["detail"]
        await still_serving(ws)


async def test_a_binary_frame_is_a_bad_request() -> None:
    async with socket() as ws:
        await ws.send_to(bytes_data=b'{"type": "ping"}')
        assert (await ws.receive_json_from())["code"] == codes.BAD_REQUEST
        await still_serving(ws)


async def test_a_frame_over_the_size_limit_closes_with_4413(settings: Any) -> None:
    settings.TASKSTORE_MAX_FRAME_BYTES = 1024
    async with socket() as ws:
        await ws.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 1024}))
        assert await ws.receive_output() == {"type": "websocket.close", "code": codes.CLOSE_FRAME_TOO_LARGE}


async def test_a_frame_at_the_size_limit_is_read(settings: Any) -> None:
    settings.TASKSTORE_MAX_FRAME_BYTES = 1024
    # The limit counts bytes: "é" is two of them in UTF-8.
    room = 1024 - len(b'{"type": "ping", "pad": ""}')
    frame = '{"type": "ping", "pad": "' + "é" * (room // 2) + "x" * (room % 2) + '"}'
    assert len(frame.encode()) == 1024
    async with socket() as ws:
        await ws.send_to(text_data=frame)
        assert await ws.receive_json_from() == {"type": "pong"}
        await ws.send_to(text_data=frame + " ")  # 1025 bytes
        assert await ws.receive_output() == {"type": "websocket.close", "code": codes.CLOSE_FRAME_TOO_LARGE}


async def test_over_the_subscription_limit_gets_too_many_subscriptions(settings: Any, staff: User) -> None:
    settings.TASKSTORE_MAX_SUBSCRIPTIONS = 3
    async with socket(staff) as ws:
        for i in range(3):
            await ws.send_json_to({"type": "subscribe", "task_id": f"t{i}"})
            assert (await ws.receive_json_from())["version"] == 0
        await ws.send_json_to({"type": "subscribe", "group_id": "g"})
        reply = await ws.receive_json_from()
        assert (reply["code"], reply["group_id"]) == (codes.TOO_MANY_SUBSCRIPTIONS, "g")
        # Subscribing again to one already held is no new subscription.
        await ws.send_json_to({"type": "subscribe", "task_id": "t0"})
        assert (await ws.receive_json_from())["type"] == "task.update"
        await ws.send_json_to({"type": "unsubscribe", "task_id": "t1"})
        await ws.send_json_to({"type": "subscribe", "group_id": "g"})
        assert (await ws.receive_json_from())["type"] == "group.update"


async def test_flooding_gets_rate_limited_then_closed_with_4429(settings: Any) -> None:
    settings.TASKSTORE_RATE_LIMIT = 1
    settings.TASKSTORE_RATE_BURST = 5
    async with socket() as ws:
        for _ in range(5):
            await ws.send_json_to({"type": "ping"})
            assert await ws.receive_json_from() == {"type": "pong"}
        await ws.send_json_to({"type": "ping"})
        assert (await ws.receive_json_from())["code"] == codes.RATE_LIMITED
        replies = []
        for _ in range(10):
            await ws.send_json_to({"type": "ping"})
        while True:
            output = await ws.receive_output()
            if output["type"] == "websocket.close":
                break
            replies.append(json.loads(output["text"])["code"])
        assert output["code"] == codes.CLOSE_FLOODING
        assert replies and set(replies) == {codes.RATE_LIMITED}


async def test_the_subscribe_race_a_transition_committed_during_the_read_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, staff: User
) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id)
    await record_async(steps[0])
    fetched = queries.fetch_openings.func
    loop = asyncio.get_running_loop()

    def received() -> int:
        return sum(hub.received for hub in fanout._hubs.get(loop, {}).values())

    before = received()

    def fetch_then_record(*args: Any) -> Any:
        # The read sees version 1; version 2 commits after it, and reaches the socket while the
        # subscribe still holds it (the read has not returned yet).
        found = fetched(*args)
        record(steps[1])
        wait_for(lambda: received() > before, 5, "version 2 to reach this process's hub")
        return found

    monkeypatch.setattr(queries, "fetch_openings", queries.database_sync_to_async(fetch_then_record))
    async with socket(staff) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        frames = [await ws.receive_json_from(), await ws.receive_json_from()]
        assert [(f["version"], f["state"]) for f in frames] == [(1, "PENDING"), (2, "RECEIVED")]
        assert await ws.receive_nothing(timeout=0.2)


async def test_versions_the_layer_dropped_are_filled_from_the_database(
    monkeypatch: pytest.MonkeyPatch, staff: User
) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id, steps=4)
    real_publish = publisher.publish
    dropped = {3, 4, 5, 7}

    def lossy(messages: Any) -> None:
        real_publish([m for m in messages if m[1]["document"]["version"] not in dropped])

    monkeypatch.setattr(publisher, "publish", lossy)
    real_task_events = queries.task_events
    read: list[int] = []

    async def task_events(task_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        documents = await real_task_events(task_id, after, upto)
        read.extend(d["version"] for d in documents)
        return documents

    monkeypatch.setattr(queries, "task_events", task_events)
    async with socket(staff) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        assert (await ws.receive_json_from())["version"] == 0
        for step in steps:
            await record_async(step)
        frames = await frames_until(ws, lambda f: f["state"] == "SUCCESS")
    assert [f["version"] for f in frames] == list(range(1, 9))
    assert [f["progress"] for f in frames if f["state"] == "PROGRESS"] == [
        {"current": i, "total": 4} for i in range(1, 5)
    ]
    # What the layer lost was read from the database, each version once (versions 3-5 before
    # version 6 went out, 7 before 8, unless the periodic check got there first).
    assert sorted(read) == sorted(dropped)


async def test_late_and_repeated_messages_are_dropped(staff: User) -> None:
    task_id = str(uuid4())
    async with socket(staff) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        assert (await ws.receive_json_from())["version"] == 0
        documents = [await record_async(step) for step in transitions(task_id, steps=1)]
        frames = await frames_until(ws, lambda f: f["state"] == "SUCCESS")
        layer = get_channel_layer()
        for document in reversed(documents):  # late copies, newest first
            await layer.group_send(
                addressing.task_group(task_id), {"type": "taskstore.task", "document": document}
            )
        assert await ws.receive_nothing(timeout=0.2)
    assert [f["version"] for f in frames] == [1, 2, 3, 4, 5]


async def test_the_periodic_check_delivers_a_lost_final_message_and_rejoins_the_group(
    monkeypatch: pytest.MonkeyPatch, settings: Any, staff: User
) -> None:
    task_id, steps = losing_its_end(monkeypatch, settings)
    async with socket(staff) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        assert (await ws.receive_json_from())["version"] == 0
        layer = get_channel_layer()
        # Membership lost (as on a Redis restart): the check re-adds it.
        layer.groups.clear()
        for step in steps[:-1]:
            await record_async(step)
        await record_async(steps[-1])
        frames = await frames_until(ws, lambda f: f["state"] == "SUCCESS", timeout=5)
    assert [f["version"] for f in frames] == [1, 2, 3, 4, 5]


async def test_since_replays_recorded_versions_then_live_ones(alice: User) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id, owner_id=alice.pk, steps=2)
    for step in steps[:4]:
        await record_async(step)
    async with socket(alice) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id, "since": 1})
        replay = [await ws.receive_json_from() for _ in range(3)]
        assert [f["version"] for f in replay] == [2, 3, 4]
        for step in steps[4:]:
            await record_async(step)
        live = await frames_until(ws, lambda f: f["state"] == "SUCCESS")
    assert [f["version"] for f in live] == [5, 6]
    assert all("traceback" not in f and "args" not in f and "owner_id" not in f for f in replay + live)


async def test_since_at_the_current_version_sends_nothing_until_the_next(alice: User) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id, owner_id=alice.pk, steps=1)
    await record_async(steps[0])
    async with socket(alice) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id, "since": 1})
        assert await ws.receive_nothing(timeout=0.2)
        await record_async(steps[1])
        assert (await ws.receive_json_from())["version"] == 2


async def test_unknown_and_foreign_tasks_answer_alike(alice: User) -> None:
    task_id = str(uuid4())
    await record_async(transitions(task_id)[0])  # nobody's task
    async with socket(alice) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        foreign = await ws.receive_json_from()
        await ws.send_json_to({"type": "subscribe", "task_id": "no-such-task"})
        unknown = await ws.receive_json_from()
        await still_serving(ws)
    assert foreign == {**unknown, "task_id": task_id}
    assert foreign["code"] == codes.FORBIDDEN


async def test_a_token_opens_an_unrecorded_task_as_pending_version_0() -> None:
    task_id = str(uuid4())
    async with socket() as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id, "token": make_token(task_id)})
        first = await ws.receive_json_from()
        assert (first["type"], first["state"], first["version"]) == ("task.update", "PENDING", 0)
        await record_async(transitions(task_id)[0])
        assert (await ws.receive_json_from())["version"] == 1


async def test_unsubscribe_stops_updates(staff: User) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id)
    async with socket(staff) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": task_id})
        await ws.receive_json_from()
        await ws.send_json_to({"type": "unsubscribe", "task_id": task_id})
        await still_serving(ws)
        await record_async(steps[0])
        assert await ws.receive_nothing(timeout=0.2)


async def test_anonymous_feed_is_accepted_then_closed_with_4401() -> None:
    communicator = WebsocketCommunicator(FeedConsumer.as_asgi(), "/ws/feed/")
    communicator.scope["user"] = AnonymousUser()
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": codes.CLOSE_UNAUTHENTICATED,
    }
    await communicator.disconnect()


async def test_a_feed_hears_of_a_task_recorded_as_soon_as_it_is_open(
    monkeypatch: pytest.MonkeyPatch, staff: User
) -> None:
    # A slow join on the layer: a feed that reported itself open before its join was done would
    # miss the task recorded right after the handshake, and hear of it never (no version of it
    # had come, so the periodic check has nothing to catch up).
    layer = get_channel_layer()
    group_add = layer.group_add

    async def slow_group_add(group: str, channel: str) -> None:
        await asyncio.sleep(0.3)
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", slow_group_add)
    task_id = str(uuid4())
    async with socket(staff, FeedConsumer, "/ws/feed/") as ws:
        await record_async(transitions(task_id)[0])
        frame = await ws.receive_json_from(timeout=2)
        assert (frame["task_id"], frame["version"]) == (task_id, 1)


async def test_a_users_feed_shows_their_tasks_only(alice: User) -> None:
    mine, theirs = str(uuid4()), str(uuid4())
    async with socket(alice, FeedConsumer, "/ws/feed/") as ws:
        await record_async(transitions(theirs)[0])
        await record_async(transitions(mine, owner_id=alice.pk)[0])
        frame = await ws.receive_json_from()
        assert (frame["task_id"], frame["version"]) == (mine, 1)
        assert await ws.receive_nothing(timeout=0.2)
