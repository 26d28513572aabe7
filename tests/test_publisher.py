"""The process's publisher: one per process, and reset() starts it afresh."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskstore import publisher as publishing
from taskstore.publisher import Publisher
from tests.support.processes import wait_for


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """The batches publishers hand to the channel layer through their sending thread (none
    reaches a real one; none is sent from the calling thread)."""
    batches: list[list[Any]] = []
    monkeypatch.setattr(publishing.blocking_send, "for_layer", lambda layer: None)

    async def send(self: Any, batch: list[Any]) -> None:
        batches.append(batch)

    monkeypatch.setattr(publishing._Sender, "_send", send)
    return batches


def _sending_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "taskstore-publisher"]


def test_a_reset_sends_what_is_queued_stops_the_thread_and_publishing_goes_on(
    sent: list[list[Any]],
) -> None:
    threads = len(_sending_threads())
    publisher = Publisher()
    publisher.publish([("group", {"n": 1})])
    assert len(_sending_threads()) == threads + 1
    assert publisher.reset(timeout=5)
    assert [message["n"] for batch in sent for _, message in batch] == [1]
    wait_for(lambda: len(_sending_threads()) == threads, 5, "the sending thread to end")

    publisher.publish([("group", {"n": 2})])
    assert publisher.reset(timeout=5)
    assert [message["n"] for batch in sent for _, message in batch] == [1, 2]


def test_a_reset_releases_a_flush_waiting_for_what_it_forgot(sent: list[list[Any]]) -> None:
    publisher = Publisher()
    publisher._pending = 3  # batches queued on a loop that went away
    assert not publisher.reset(timeout=0.01)
    assert publisher.flush(timeout=0.01)
