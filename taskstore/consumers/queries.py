"""The consumers' database work, each a small helper run in Django's thread.

Everything the consumers read goes through :mod:`taskstore.permissions` for the checks and
through these helpers for the reading, so a handler stays a few lines of protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async

from taskstore import permissions, sessions, states
from taskstore.consumers.batching import Batched
from taskstore.documents import task_document, unrecorded_document
from taskstore.groups import group_document
from taskstore.models import GroupRecord, TaskRecord
from taskstore.permissions import Viewer
from taskstore.sessions import Grant


@dataclass
class Opening:
    """What a new task subscription sends first, and the version it then holds."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0
    done: bool = False  # the task ended at or below ``version``: nothing more will come
    owner_id: int | None = None


OpeningKey = tuple[str, "int | None"]
# A task's current document (None: not recorded) and its recorded versions above ``since``.
Found = tuple["dict[str, Any] | None", "list[dict[str, Any]]"]


@database_sync_to_async
def fetch_openings(keys: set[OpeningKey]) -> dict[OpeningKey, Found]:
    """What subscriptions to ``(task_id, since)`` start from, without permission checks."""
    records = {r.task_id: r for r in TaskRecord.objects.filter(task_id__in={t for t, _ in keys})}
    found: dict[OpeningKey, Found] = {}
    for task_id, since in keys:
        record = records.get(task_id)
        if record is None:
            found[(task_id, since)] = (None, [])
            continue
        current = task_document(record)
        replay = []
        if since is not None and current["version"] > since:
            replay = permissions.events_after(task_id, since)
        found[(task_id, since)] = (current, replay)
    return found


# Sockets subscribing at once (a reconnect storm) share their reads: taskstore.consumers.batching.
_openings: Batched[OpeningKey, Found] = Batched(lambda keys: fetch_openings(keys))


async def open_task(viewer: Viewer, task_id: str, token: str | None, since: int | None) -> Opening | None:
    """The first documents of a task subscription, or None when ``viewer`` may not see the task.

    Without ``since``: the current document. With it: every recorded version above ``since``.
    The documents may be shared with other sockets: do not change them.
    """
    if not permissions.valid_id(task_id):
        return None
    current, replay = (await _openings.get([(task_id, since)])).get((task_id, since), (None, []))
    if current is None:
        if not permissions.may_see_unrecorded(viewer, task_id, token, "task"):
            return None
        current = unrecorded_document(task_id)
    elif not permissions.may_see(viewer, task_id, current.get("owner_id"), token, "task"):
        return None
    done, owner_id = current["state"] in states.TERMINAL_STATES, current.get("owner_id")
    if since is None:
        return Opening([current], current["version"], done, owner_id)
    replay = list(replay)
    if current["version"] > since and (not replay or replay[-1]["version"] < current["version"]):
        # Event rows end below the row's version only if they were deleted; the row still counts.
        replay.append(current)
    return Opening(replay, max([since, *(d["version"] for d in replay)]), done, owner_id)


@database_sync_to_async
def open_group(viewer: Viewer, group_id: str, token: str | None) -> dict[str, Any] | None:
    """The group's current document, or None when ``viewer`` may not see the group."""
    return permissions.group_for(viewer, group_id, token)


EventsKey = tuple[str, int, int]


@database_sync_to_async
def fetch_events(keys: set[EventsKey]) -> dict[EventsKey, list[dict[str, Any]]]:
    """For each ``(task_id, after, upto)``, the recorded versions after < v <= upto, ascending."""
    return {key: permissions.events_after(*key) for key in keys}


# Sockets that fall behind together (one lost message, seen by all of a task's followers) fill
# the same gap: one query for all of them.
_events: Batched[EventsKey, list[dict[str, Any]]] = Batched(lambda keys: fetch_events(keys))


async def task_events(task_id: str, after: int, upto: int) -> list[dict[str, Any]]:
    """The recorded versions ``after`` < v <= ``upto`` of a task, ascending (shared: do not
    change them)."""
    key = (task_id, after, upto)
    return (await _events.get([key])).get(key, [])


@database_sync_to_async
def fetch_versions(task_ids: set[str]) -> dict[str, int]:
    """The recorded version of each of ``task_ids`` (unrecorded ones are left out): one query."""
    return dict(TaskRecord.objects.filter(task_id__in=task_ids).values_list("task_id", "version"))


# Every socket's periodic check asks this; the checks of one process share their queries.
_versions: Batched[str, int] = Batched(lambda ids: fetch_versions(ids))


async def task_versions(task_ids: list[str]) -> dict[str, int]:
    """The recorded version of each of ``task_ids`` (unrecorded ones are left out)."""
    return await _versions.get(task_ids)


@database_sync_to_async
def recheck_grants(grants: list[Grant]) -> dict[Grant, Viewer]:
    """What each of ``grants`` still makes (taskstore.sessions.recheck_many)."""
    return sessions.recheck_many(grants)


async def newer_groups(held: dict[str, int]) -> list[dict[str, Any]]:
    """The current documents of the groups whose version passed the one held."""
    # Most sockets follow no group: no trip to the database thread for them.
    return await _newer_groups(held) if held else []


@database_sync_to_async
def _newer_groups(held: dict[str, int]) -> list[dict[str, Any]]:
    groups = GroupRecord.objects.filter(group_id__in=list(held))
    return [group_document(g) for g in groups if g.version > held[g.group_id]]


@database_sync_to_async
def updated_since(viewer: Viewer, moment: datetime, limit: int) -> list[dict[str, Any]]:
    """The current documents of the tasks a feed of ``viewer`` shows that changed at or after
    ``moment``, oldest change first, at most ``limit`` of them (the most recent ones)."""
    tasks = TaskRecord.objects.visible_to(viewer).filter(date_updated__gte=moment)
    recent = list(tasks.order_by("-date_updated")[:limit])
    return [task_document(record) for record in reversed(recent)]
