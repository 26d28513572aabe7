"""The one pause sequence behind every retry loop (taskstore.backoff), and its callers' limits."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from taskstore.backoff import Backoff


def test_pauses_double_up_to_the_cap() -> None:
    pauses = list(itertools.islice(Backoff(first=0.05, cap=1.0).delays(), 8))
    assert pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_a_factor_other_than_two() -> None:
    assert list(itertools.islice(Backoff(first=1, cap=20, factor=3).delays(), 4)) == [1, 3, 9, 20]


def test_jitter_draws_each_pause_below_its_unjittered_value_without_slowing_growth() -> None:
    plain = list(itertools.islice(Backoff(first=1, cap=64).delays(), 7))
    for _ in range(50):
        jittered = list(itertools.islice(Backoff(first=1, cap=64, jitter=0.5).delays(), 7))
        assert all(p / 2 <= j <= p for j, p in zip(jittered, plain, strict=True))
    draws = {round(next(Backoff(first=1, cap=1, jitter=0.5).delays()), 6) for _ in range(20)}
    assert len(draws) > 1, "jitter drew the same pause every time"


def test_after_continues_from_a_kept_pause() -> None:
    backoff = Backoff(first=2, cap=60)
    assert backoff.after(0) == 2
    assert backoff.after(2) == 4
    assert backoff.after(40) == 60
    assert backoff.after(60) == 60
    # A kept pause below ``first`` (the caller's own start) never makes the next one shorter.
    assert backoff.after(0.5) == 2


@pytest.mark.parametrize(
    "arguments",
    [{"first": 0, "cap": 1}, {"first": 2, "cap": 1}, {"first": 1, "cap": 2, "factor": 0.5},
     {"first": 1, "cap": 2, "jitter": 1.5}],
)  # fmt: skip
def test_a_sequence_that_would_not_back_off_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)


def test_each_caller_keeps_its_limits() -> None:
    from taskstore import layer_outages, publisher, recorder

    assert (recorder.WRITE_BACKOFF.first, recorder.WRITE_BACKOFF.cap) == (0.05, 1.0)
    assert (publisher.SEND_BACKOFF.first, publisher.SEND_BACKOFF.cap) == (0.1, 2.0)
    assert (layer_outages.RECEIVE_BACKOFF.first, layer_outages.RECEIVE_BACKOFF.cap) == (0.5, 10.0)


async def test_a_failing_periodic_check_waits_longer_each_time_up_to_the_cap(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from taskstore.consumers.base import MAX_RECONCILE_BACKOFF, LiveConsumer

    class Failing(LiveConsumer):
        async def reconcile(self) -> None:
            raise RuntimeError("the database is away")

    settings.TASKSTORE_RECONCILE_INTERVAL = 10
    consumer = Failing()
    consumer.closing = False
    consumer.start_checks()
    pauses = []
    try:
        for _ in range(4):
            consumer.check_retry_at = 0.0  # due now
            assert await consumer.periodic_check() == 10
            pauses.append(consumer.check_backoff)
    finally:
        consumer.stop_reconciler()
    assert pauses == [20, 40, MAX_RECONCILE_BACKOFF, MAX_RECONCILE_BACKOFF]
    assert "next try in 20.0s" in caplog.text
