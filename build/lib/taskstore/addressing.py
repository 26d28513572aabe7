"""Channel-layer group names for tasks, task groups and feeds."""

from __future__ import annotations

import hashlib
import re

FEED_STAFF = "taskstore.feed.staff"

# Channels allows ASCII letters, digits, hyphens, periods and underscores, under 100 characters.
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _key(identifier: str) -> str:
    if _SAFE.match(identifier):
        return identifier
    return "h" + hashlib.sha256(identifier.encode()).hexdigest()[:40]


def task_group(task_id: str) -> str:
    """The group a task's subscribers join."""
    return f"taskstore.task.{_key(task_id)}"


def group_group(group_id: str) -> str:
    """The group a task group's subscribers join."""
    return f"taskstore.group.{_key(group_id)}"


def feed_user(user_id: int) -> str:
    """The feed of one user's own tasks."""
    return f"taskstore.feed.user.{user_id}"
