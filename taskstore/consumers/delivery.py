"""What one socket has sent of each task and group: the state behind the delivery promise.

A task's versions reach a subscription once each, in order, with no gaps (docs/protocol.md, "The
delivery promise"). The channel layer gives no such promise: messages from different processes (the
web process records PENDING, the worker's main process RECEIVED, its pool children the rest) arrive
in any order, and channels-redis drops messages when a channel is over capacity (its documented
behaviour, channels_redis #212 and the ASGI spec's at-most-once delivery). So each stream keeps
the last version it sent: anything at or below it is dropped, and a version that skips ahead
is preceded by the missing ones, read from the event rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from taskstore import states

# This process's counts of what the layer's order or losses cost, for /metrics
# (taskstore.operations.pushstats, taskstore_push_gaps_filled and slow-consumer closes):
# "filled" counts versions read from the database to close a gap, "reconciled" versions the
# periodic check found.
counters: Counter[str] = Counter()


# Slots: a socket holds one of these per subscription, thousands per server process.
@dataclass(slots=True)
class TaskStream:
    """One task as one socket sees it."""

    task_id: str
    sent_version: int = -1  # the last version sent; -1 before the first
    done: bool = False  # a terminal state was sent: nothing can follow
    joined: bool = True  # still in the task's channel-layer group
    # Why the socket may see the task: a valid token (a capability that outlives the session),
    # else what the session grants (ownership or staff rights), checked again when it changes.
    by_token: bool = False
    owner_id: int | None = None
    # The version the database held at the previous periodic check (None before the first).
    recorded: int | None = None

    def record_sent(self, version: int, state: str) -> None:
        """Note that ``version`` (in ``state``) went out."""
        self.sent_version = version
        self.done = state in states.TERMINAL_STATES


@dataclass(slots=True)
class GroupStream:
    """One task group as one socket sees it.

    A group document is cumulative (counts of its members by state), so a skipped group version
    needs no filling: the next document says everything. Older versions are still dropped.
    """

    group_id: str
    sent_version: int = -1  # the last version sent; -1 before the first
    by_token: bool = False  # as for TaskStream
    owner_id: int | None = None
