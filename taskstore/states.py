"""Task states and their order within a task's lifecycle.

Each transition gets a *position*: ``attempt * 10 + rank``. The recorder's conditional write
accepts a transition only when its position is higher than the stored one, so a late or
duplicated message can never move a task backwards. Terminal states share the highest position,
which nothing passes.
"""

from __future__ import annotations

from celery import states as celery_states

PENDING = celery_states.PENDING
RECEIVED = celery_states.RECEIVED
STARTED = celery_states.STARTED
RETRY = celery_states.RETRY
SUCCESS = celery_states.SUCCESS
FAILURE = celery_states.FAILURE
REVOKED = celery_states.REVOKED
REJECTED = celery_states.REJECTED

TERMINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED, REJECTED})
BUILTIN_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY}) | TERMINAL_STATES

# Rank within one attempt. RETRY opens the next attempt, so it ranks with PENDING.
_RANK = {PENDING: 0, RETRY: 0, RECEIVED: 1, STARTED: 2}
CUSTOM_RANK = 3
TERMINAL_POSITION = 2**62


def is_custom(state: str) -> bool:
    """Whether ``state`` is a custom state from ``update_state`` (e.g. ``PROGRESS``)."""
    return state not in BUILTIN_STATES


def position(state: str, attempt: int) -> int:
    """Return the lifecycle position of ``state`` in attempt number ``attempt``."""
    if state in TERMINAL_STATES:
        return TERMINAL_POSITION
    return attempt * 10 + _RANK.get(state, CUSTOM_RANK)
