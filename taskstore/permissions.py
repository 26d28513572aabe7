"""Who may see a task or a group, and what they see of it (docs/protocol.md, "Who may see a task").

A task or group may be seen by its owner, by staff, and by whoever holds its token. Nobody else
learns anything about it, not even that it exists: every lookup here answers ``None`` both for an
unknown id and for one the viewer may not see, so callers cannot tell the two apart. Staff and
token holders may look at an id nothing has recorded yet; they see it as ``PENDING``, version 0.

The REST views and the WebSocket consumers both go through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskstore import documents, tokens
from taskstore.groups import group_document
from taskstore.models import GroupRecord, TaskEvent, TaskRecord

# Ids are the primary keys of TaskRecord and GroupRecord: at most this many characters.
MAX_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a user id (None when anonymous) and whether they are staff."""

    user_id: int | None = None
    staff: bool = False

    @classmethod
    def of(cls, user: Any) -> Viewer:
        """The viewer for a Django user (or AnonymousUser, or None)."""
        if user is None or not getattr(user, "is_authenticated", False):
            return cls()
        return cls(user_id=int(user.pk), staff=bool(user.is_staff and user.is_active))

    @property
    def anonymous(self) -> bool:
        """Whether nobody is logged in."""
        return self.user_id is None


def valid_id(value: Any) -> bool:
    """Whether ``value`` can be a task or group id: 1-255 characters, no whitespace or controls."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def may_see(viewer: Viewer, identifier: str, owner_id: int | None, token: str | None, kind: str) -> bool:
    """Whether ``viewer`` may see the recorded task (or group) ``identifier`` owned by ``owner_id``."""
    if viewer.staff:
        return True
    if owner_id is not None and viewer.user_id == owner_id:
        return True
    return tokens.check_token(identifier, token, kind=kind)


def may_see_unrecorded(viewer: Viewer, identifier: str, token: str | None, kind: str) -> bool:
    """Whether ``viewer`` may watch an id nothing has recorded yet: staff and token holders."""
    return viewer.staff or tokens.check_token(identifier, token, kind=kind)


def may_see_owned(viewer: Viewer, owner_id: int | None) -> bool:
    """Whether a feed of ``viewer`` may show a task owned by ``owner_id`` (no token on feeds).

    The rule of ``TaskRecord.objects.visible_to`` (taskstore.models) for one document already
    in hand; tests/test_visibility.py holds the two to the same answers.
    """
    return viewer.staff or (owner_id is not None and viewer.user_id == owner_id)


def task_for(viewer: Viewer, task_id: str, token: str | None = None) -> dict[str, Any] | None:
    """The full task document if ``viewer`` may see the task, else None (also for unknown ids).

    The document still holds staff fields and the owner id: show it with :func:`shown_task`.
    """
    if not valid_id(task_id):
        return None
    record = TaskRecord.objects.filter(task_id=task_id).first()
    if record is None:
        return (
            documents.unrecorded_document(task_id)
            if may_see_unrecorded(viewer, task_id, token, "task")
            else None
        )
    if not may_see(viewer, task_id, record.owner_id, token, "task"):
        return None
    return documents.task_document(record)


def events_after(task_id: str, since: int, upto: int | None = None) -> list[dict[str, Any]]:
    """The full documents of the task's recorded versions above ``since`` (to ``upto``), ascending.

    No permission check: call it for a task :func:`task_for` let the viewer see.
    """
    rows = TaskEvent.objects.filter(task_id=task_id, version__gt=since)
    if upto is not None:
        rows = rows.filter(version__lte=upto)
    return list(rows.order_by("version").values_list("document", flat=True))


def group_for(viewer: Viewer, group_id: str, token: str | None = None) -> dict[str, Any] | None:
    """The group document if ``viewer`` may see the group, else None (also for unknown ids)."""
    if not valid_id(group_id):
        return None
    group = GroupRecord.objects.filter(group_id=group_id).first()
    if group is None:
        return unrecorded_group(group_id) if may_see_unrecorded(viewer, group_id, token, "group") else None
    if not may_see(viewer, group_id, group.owner_id, token, "group"):
        return None
    return group_document(group)


def unrecorded_group(group_id: str) -> dict[str, Any]:
    """The document of a group none of whose members has been recorded yet."""
    return {
        "group_id": group_id,
        "version": 0,
        "total": 0,
        "counts": {},
        "completed": 0,
        "state": "PENDING",
        "results": None,
    }


def shown_task(document: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """The task document as ``viewer`` sees it: staff fields for staff only, no owner id."""
    return documents.for_viewer(document, staff=viewer.staff)


def shown_group(document: dict[str, Any]) -> dict[str, Any]:
    """The group document as clients see it: without the internal owner id."""
    return {k: v for k, v in document.items() if k != "owner_id"}
