"""Who hears of what on the channel layer: the group names of tasks, task groups and feeds, the
message types, and which groups each recorded change goes to."""

from __future__ import annotations

import hashlib
import re
from typing import Any

FEED_STAFF = "taskstore.feed.staff"

# The ``type`` of a message carrying a task document (handled by ``taskstore_task``) and of one
# carrying a group document (``taskstore_group``).
MESSAGE_TASK = "taskstore.task"
MESSAGE_GROUP = "taskstore.group"

Message = tuple[str, dict[str, Any]]

# Channels allows ASCII letters, digits, hyphens, periods and underscores, under 100 characters.
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _key(identifier: str) -> str:
    if _SAFE.match(identifier):
        return identifier
    return "h" + hashlib.sha256(identifier.encode()).hexdigest()[:40]


def task_group(task_id: str) -> str:
    """The group a task's subscribers join."""
    return f"taskstore.task.{_key(task_id)}"


def group_channel_group(group_id: str) -> str:
    """The channel-layer group a task group's (a Celery group's) subscribers join."""
    return f"taskstore.group.{_key(group_id)}"


def feed_user(user_id: int) -> str:
    """The feed of one user's own tasks."""
    return f"taskstore.feed.user.{user_id}"


def task_messages(document: dict[str, Any]) -> list[Message]:
    """The ``(group, message)`` pairs that announce a task ``document`` (already fit for push):
    to the task's subscribers, the staff feed, and its owner's feed when it has an owner."""
    message = {"type": MESSAGE_TASK, "document": document}
    targets = [task_group(document["task_id"]), FEED_STAFF]
    if document.get("owner_id") is not None:
        targets.append(feed_user(document["owner_id"]))
    return [(target, message) for target in targets]


def group_messages(document: dict[str, Any]) -> list[Message]:
    """The ``(group, message)`` pairs that announce a group ``document``: to its subscribers."""
    return [(group_channel_group(document["group_id"]), {"type": MESSAGE_GROUP, "document": document})]
