"""Group documents: a group's members counted by state, results when all are done."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count
from django.utils import timezone

from taskstore import states
from taskstore.models import GroupRecord, TaskRecord

# date_updated never goes back: the time is taken before the row lock, and two members' touches
# race, so the one that waited may carry the earlier time (tests wait on this column).
_TOUCH = """
INSERT INTO {table} AS g (group_id, version, total, members, owner_id, date_created, date_updated)
VALUES (%s, 1, NULL, NULL, %s, %s, %s)
ON CONFLICT (group_id) DO UPDATE SET
    version = g.version + 1,
    owner_id = COALESCE(g.owner_id, excluded.owner_id),
    date_updated = CASE WHEN excluded.date_updated > g.date_updated
                        THEN excluded.date_updated ELSE g.date_updated END
RETURNING group_id, version, total, members, owner_id, date_created, date_updated
"""


def touch_group(group_id: str, owner_id: int | None = None) -> GroupRecord:
    """Give the group its next version (creating its row if needed) and return the row."""
    now = timezone.now()
    field = GroupRecord._meta.get_field("date_updated")
    stamp = field.get_db_prep_save(now, connection)
    sql = _TOUCH.format(table=connection.ops.quote_name(GroupRecord._meta.db_table))
    return next(iter(GroupRecord.objects.raw(sql, [group_id, owner_id, stamp, stamp])))


def save_members(group_id: str, members: list[str], owner_id: int | None = None) -> None:
    """Record a group's exact membership and order (a saved group or a chord header)."""
    now = timezone.now()
    fields = {"total": len(members), "members": members, "date_updated": now}
    # Not update_or_create(create_defaults=...), which arrived in Django 5.0: the owner and the
    # creation time are set by the first save only; get_or_create survives a racing insert.
    _, created = GroupRecord.objects.get_or_create(
        group_id=group_id, defaults={**fields, "owner_id": owner_id, "date_created": now}
    )
    if not created:
        GroupRecord.objects.filter(group_id=group_id).update(**fields)


def group_document(group: GroupRecord) -> dict[str, Any]:
    """Return the group document of the contract for ``group``."""
    rows = (
        TaskRecord.objects.filter(group_id=group.group_id)
        .values("state")
        .annotate(n=Count("task_id"))
        .order_by()
    )
    counts = {row["state"]: row["n"] for row in rows}
    recorded = sum(counts.values())
    total = group.total if group.total is not None else recorded
    completed = sum(n for state, n in counts.items() if state in states.TERMINAL_STATES)
    done = total > 0 and completed >= total
    state: str
    if done:
        state = states.SUCCESS if counts.get(states.SUCCESS, 0) >= total else states.FAILURE
    elif recorded and any(s not in (states.PENDING, states.RECEIVED) for s in counts):
        state = states.STARTED
    else:
        state = states.PENDING
    document: dict[str, Any] = {
        "group_id": group.group_id,
        "version": group.version,
        "total": total,
        "counts": counts,
        "completed": completed,
        "state": state,
        "results": _results(group) if done else None,
        "owner_id": group.owner_id,
    }
    return document


def _results(group: GroupRecord) -> list[Any]:
    members = TaskRecord.objects.filter(group_id=group.group_id).only(
        "task_id", "result", "state", "date_created"
    )
    by_id = {m.task_id: m for m in members}
    order = group.members or [m.task_id for m in sorted(by_id.values(), key=lambda m: m.date_created)]
    return [by_id[i].result if i in by_id else None for i in order]
