"""A failing channel layer closes no socket: consumers wait it out and the periodic check keeps
subscribers up to date from the database (taskstore.layer_outages)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.contrib.auth.models import User

import taskstore
from taskstore import addressing, compat, fanout, layer_outages
from taskstore.backoff import Backoff
from taskstore.consumers.feed import FeedConsumer
from taskstore.tokens import make_token
from tests.test_ws_protocol import frames_until, record_async, socket, still_serving, transitions


class LayerDown(ConnectionError):
    """What the flaky layer raises while it is down."""


class FlakyLayer(InMemoryChannelLayer):
    """An in-memory layer whose joins, leaves and receives fail while ``down`` is set.

    Sending keeps working (it reaches no one while nobody could join): the publisher's own
    retries are not what these tests are about.
    """

    down = False

    def _check(self) -> None:
        if FlakyLayer.down:
            raise LayerDown("the layer is down")

    async def group_add(self, group: str, channel: str) -> None:
        self._check()
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self._check()
        await super().group_discard(group, channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        self._check()
        return await super().receive(channel)


@pytest.fixture
def flaky_layer(settings: Any) -> Iterator[type[FlakyLayer]]:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.FlakyLayer"}}
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.1
    FlakyLayer.down = True
    yield FlakyLayer
    FlakyLayer.down = False


async def test_receive_retries_after_layer_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Any] = [LayerDown("first"), LayerDown("second"), {"type": "hello"}]

    async def receive() -> dict[str, Any]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(layer_outages, "RECEIVE_BACKOFF", Backoff(first=0.01, cap=0.01))
    failures: list[None] = []
    receive_on = layer_outages.tolerant(receive, lambda: failures.append(None))
    assert await asyncio.wait_for(receive_on(), 5) == {"type": "hello"}
    assert outcomes == []
    assert len(failures) == 2


async def test_a_failure_counts_against_its_own_group_only() -> None:
    class OneGroupDown(InMemoryChannelLayer):
        async def group_add(self, group: str, channel: str) -> None:
            if group == "down":
                raise LayerDown("this group's join fails")
            await super().group_add(group, channel)

    class Member:
        def offer(self, message: dict[str, Any]) -> None:
            pass

    hub, member = fanout.Hub(OneGroupDown()), Member()
    before = time.monotonic()
    try:
        await hub.join("down", member)
        await hub.join("up", member)
        # A feed in "up" does not go to the database because another socket's join failed.
        assert hub.failed_since("down", before)
        assert not hub.failed_since("up", before)
        assert not hub.failed_since("down", time.monotonic())
    finally:
        for group in ("down", "up"):
            await hub.leave(group, member)
        if hub.refresher is not None:
            hub.refresher.cancel()


async def test_cancelling_returns_even_when_the_layer_swallows_the_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layer_outages, "CANCEL_GRACE", 0.05)
    release = asyncio.Event()
    swallowed = asyncio.Event()

    async def stubborn_receive() -> dict[str, Any]:
        # What a blocking Redis read that loses the cancellation looks like from outside.
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()
        await release.wait()
        return {"type": "late"}

    waiting = asyncio.create_task(layer_outages.tolerant(stubborn_receive)())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 2)
    await asyncio.wait_for(swallowed.wait(), 2)
    release.set()


async def test_cancelling_a_join_reaches_the_caller_even_when_the_call_swallows_it() -> None:
    release = asyncio.Event()

    async def stubborn_join() -> None:
        # Lose the cancellation, as Python 3.11's wait_for does when its operation completes
        # just as it is cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await release.wait()

    caller = asyncio.create_task(layer_outages.one_at_a_time([stubborn_join()], "join"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 2)
    release.set()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
async def test_subscribers_are_served_from_the_database_while_the_layer_is_down(
    flaky_layer: type[FlakyLayer],
) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id, steps=4)
    for transition in steps[:2]:
        await record_async(transition)

    async with socket() as ws:
        await ws.send_json_to(
            {"type": "subscribe", "task_id": task_id, "since": 0, "token": make_token(task_id)}
        )
        opening = await frames_until(ws, lambda f: f["version"] == 2)
        assert [f["version"] for f in opening] == [1, 2]
        await still_serving(ws)

        # The socket could join nothing, so these reach it through the periodic check.
        for transition in steps[2:4]:
            await record_async(transition)
        while_down = await frames_until(ws, lambda f: f["version"] == 4)
        assert [f["version"] for f in while_down] == [3, 4]

        # Back up, the periodic check joins the task's group again: live delivery resumes.
        flaky_layer.down = False
        joined = get_channel_layer().groups
        async with compat.timeout(5):
            while not joined.get(addressing.task_group(task_id)):
                await asyncio.sleep(0.02)
        for transition in steps[4:]:
            await record_async(transition)
        rest = await frames_until(ws, lambda f: f["state"] == "SUCCESS")
        assert [f["version"] for f in opening + while_down + rest] == list(range(1, len(steps) + 1))
        await still_serving(ws)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
async def test_wait_resolves_while_the_layer_is_down(flaky_layer: type[FlakyLayer]) -> None:
    task_id = str(uuid4())
    steps = transitions(task_id, steps=1)
    await record_async(steps[0])
    waiter = asyncio.create_task(taskstore.wait(task_id, timeout=10))
    for transition in steps[1:]:
        await record_async(transition)
    document = await waiter
    assert (document["state"], document["version"]) == ("SUCCESS", len(steps))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
async def test_feeds_hear_of_tasks_that_ran_while_the_layer_was_down(flaky_layer: type[FlakyLayer]) -> None:
    alice = await User.objects.acreate(username="alice")
    bob = await User.objects.acreate(username="bob")
    hers, his = str(uuid4()), str(uuid4())
    async with socket(alice, FeedConsumer, "/ws/feed/") as ws:
        # Both tasks run from start to end while the feed can hear nothing through the layer.
        for transition in transitions(his, owner_id=bob.pk) + transitions(hers, owner_id=alice.pk):
            await record_async(transition)
        frames = await frames_until(ws, lambda f: f["state"] == "SUCCESS")
        assert {f["task_id"] for f in frames} == {hers}
        assert [f["version"] for f in frames] == list(range(1, len(transitions(hers)) + 1))
        assert await ws.receive_nothing(timeout=0.3)
        await still_serving(ws)
