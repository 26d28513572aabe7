"""Running a batch's exchange with Redis, from an event loop or from a blocking thread.

taskstore.core_groups and taskstore.pubsub_batch each describe a batch's round trips as an
exchange without I/O: a generator that yields a round's scripts, one per Redis host, is sent
their outcomes (each a reply or the error), and returns one result per message. The drivers
here run an exchange through whatever evaluates a script: the layer's asyncio connections from
the publisher's loop, or a synchronous client from the calling thread (taskstore.blocking_send).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

# One script to run: its host's key (an index, or a shard), the script, and EVAL's arguments
# after the script (the number of keys, the keys, the other arguments).
Script = tuple[Any, str, list[Any]]
Exchange = Generator[list[Script], list[Any], list[Any]]


async def run(exchange: Exchange, evaluate: Callable[[Any, str, list[Any]], Awaitable[Any]]) -> list[Any]:
    """Run ``exchange`` from an event loop, each round's scripts side by side."""
    scripts = next(exchange)
    while True:
        outcomes = await asyncio.gather(*(evaluate(*script) for script in scripts), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # a cancellation is not a failed send
        try:
            scripts = exchange.send(outcomes)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def run_blocking(exchange: Exchange, evaluate: Callable[[Any, str, list[Any]], Any]) -> list[Any]:
    """Run ``exchange`` from the calling thread, each round's scripts one after another."""
    scripts = next(exchange)
    while True:
        outcomes: list[Any] = []
        for script in scripts:
            try:
                outcomes.append(evaluate(*script))
            except Exception as error:
                outcomes.append(error)
        try:
            scripts = exchange.send(outcomes)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
