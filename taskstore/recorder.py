"""The recorder: the single write path for task state (docs/reliability.md, "The write path").

Every source of a transition (the publish signal, worker signals, the result backend, admin
actions) builds a :class:`Transition` and calls :func:`record`. Each call is one conditional
upsert of the task row plus an event row, atomically (on PostgreSQL one statement, elsewhere one
transaction); after the commit the new document is handed to the publisher. The upsert's ``WHERE`` compares lifecycle positions
(:mod:`taskstore.states`), so concurrent writers in different processes can neither move a task
backwards nor skip or repeat a version, and a duplicate transition records nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from taskstore import addressing, conf, linger, prepared, received, sql, states
from taskstore.backoff import Backoff
from taskstore.documents import for_push, task_document
from taskstore.groups import group_document, save_members, touch_group
from taskstore.models import GroupRecord, TaskEvent, TaskRecord
from taskstore.notices import task_recorded
from taskstore.publisher import publisher

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Pauses between attempts of a write on a fresh connection (within the write's budget).
WRITE_BACKOFF = Backoff(first=0.05, cap=1.0)

# Kept in Celery's view (celery_meta) beside what Celery stored: the lifecycle position of the
# store, so that a late store cannot replace a newer one. Celery's API does not read it.
META_POSITION = "position"


@dataclass(frozen=True)
class Transition:
    """One state change of one task, as a source observed it."""

    task_id: str
    state: str
    attempt: int = 0
    task_name: str = ""
    result: Any = None
    progress: Any = None
    error: dict[str, Any] | None = None
    traceback: str = ""
    args: Any = None
    kwargs: Any = None
    owner_id: int | None = None
    group_id: str | None = None
    parent_id: str | None = None
    worker: str | None = None
    # What Celery's result API reports after this transition; set by the result backend only.
    celery_meta: dict[str, Any] | None = None
    # Written only once the task has reached this state in the same attempt (None: no such
    # condition): a pool child's STARTED requires the RECEIVED that the worker's main process
    # records in the background, so that neither can skip the other (record_started).
    requires: str | None = None
    # When a STARTED happened, if that was before it is recorded (a held STARTED:
    # taskstore.linger): its date_started; the write's time is still the row's date_updated.
    at: datetime | None = None
    # Written only if the task's row exists: a worker's RECEIVED for a message whose producer
    # recorded PENDING. It lingers before it is written (taskstore.received), and must not bring
    # back a task forgotten or deleted meanwhile (``forget()`` right after ``get()``).
    expects_row: bool = False


def record(transition: Transition) -> dict[str, Any] | None:
    """Record ``transition``; return the new task document, or None when it was refused.

    A refused transition (a duplicate, or one that would go back in the lifecycle) records
    nothing and publishes nothing. Database errors are retried on a fresh connection, longest
    for terminal states, unless the caller holds its own transaction (which cannot be retried).
    """
    transition = _ensure_encodable(transition)
    if transition.state != states.RECEIVED:
        queued = received.writer.take(transition.task_id)
        if queued is not None:  # this process's RECEIVED of the task, still lingering: first
            _retrying(partial(_record_once, queued), queued.state, queued.task_id)
    started = linger.held.take(transition.task_id)
    if started is not None:
        if transition.state in states.TERMINAL_STATES and connection.vendor == "postgresql":
            # A short task ends while its RECEIVED still lingers in the worker's main process
            # (taskstore.received): then this statement writes RECEIVED too. A task that waited
            # longer for a pool process finds it in. Each shape refuses what the other writes,
            # so try first the one that was right last time (tasks of a worker tend to be alike).
            for leading in tuple(_leading_order):
                write = partial(_record_leading_and_final, leading, started, transition)
                documents = _retrying(write, transition.state, transition.task_id)
                if documents:
                    if leading is not _leading_order[0]:
                        _leading_order.reverse()
                    return documents[-1]
        record_started(started)
    return _retrying(partial(_record_once, transition), transition.state, transition.task_id)


def record_started(started: Transition) -> None:
    """Record the STARTED of a task a worker took off a queue, after its RECEIVED.

    The worker's main process records RECEIVED in the background, a moment late
    (taskstore.received); when it has not yet, this records RECEIVED with STARTED (on PostgreSQL in
    one statement, the three-state statement's shape without an end), and the main process's copy
    is then a duplicate. Each shape refuses what the other writes: on PostgreSQL the one that was
    right for the previous task is tried first.
    """
    if connection.vendor != "postgresql":
        if record(replace(started, requires=states.RECEIVED)) is None:
            record(replace(started, state=states.RECEIVED))
            record(started)
        return
    for with_received in tuple(_started_order):
        if _record_started_shape(started, with_received):
            if with_received is not _started_order[0]:
                _started_order.reverse()
            return
    # Neither fits (a task recorded past STARTED, or a new attempt's): the lifecycle decides.
    record(replace(started, state=states.RECEIVED))
    record(started)


# Whether a STARTED is written with RECEIVED (ahead of the main process) or alone, the likelier
# first: with a RECEIVED linger longer than the STARTED linger, a long task's child is ahead.
_started_order: list[bool] = [False, True]


def _record_started_shape(started: Transition, with_received: bool) -> bool:
    if not with_received:
        return record(replace(started, requires=states.RECEIVED)) is not None
    both = partial(_record_leading_and_final, (states.RECEIVED,), started, started)
    return bool(_retrying(both, states.STARTED, started.task_id))


def record_many(transitions: Sequence[Transition]) -> list[dict[str, Any]]:
    """Record transitions of distinct tasks together; return the documents of those recorded.

    On PostgreSQL it is one statement for all of them (the worker's background RECEIVED writer
    sends many at once); elsewhere each is recorded on its own. Of two transitions of one task
    only the first is written. None may be terminal (a batch's retry budget is a short one) or
    have a ``requires`` condition.
    """
    first: dict[str, Transition] = {}
    for transition in transitions:
        first.setdefault(transition.task_id, _ensure_encodable(transition))
    unique = list(first.values())
    if not unique:
        return []
    if any(t.state in states.TERMINAL_STATES or t.requires for t in unique):
        raise ValueError("record_many() takes non-terminal transitions without requires: record() those")
    # The check is retried with the write: the worker's main process keeps its connection
    # between batches, and the database may have dropped it meanwhile.
    return _retrying(partial(_check_and_record_batch, unique), states.RECEIVED, f"{len(unique)} tasks")


def _check_and_record_batch(transitions: list[Transition]) -> list[dict[str, Any]]:
    unique = _still_to_write(transitions)
    if not unique:
        return []
    if connection.vendor != "postgresql":
        return [document for t in unique if (document := record(t)) is not None]
    return _record_batch(unique)


def _still_to_write(transitions: list[Transition]) -> list[Transition]:
    """Leave out the transitions that expect their task's row where it is gone, and, read in the
    same query, those the lifecycle would refuse: usually the whole batch, a RECEIVED the pool
    child has written already, so the upsert is not sent at all.

    Only when some transition expects a row (a producer recorded PENDING): a batch of tasks no
    producer recorded goes straight to the upsert, which refuses on its own what it must.
    """
    if not any(t.expects_row for t in transitions):
        return transitions
    ids = [t.task_id for t in transitions]
    if connection.vendor == "postgresql":
        # One text for any number of ids (an array), so it is prepared once per connection.
        statement = f"SELECT task_id, position FROM {_table(TaskRecord)} WHERE task_id = ANY(%s)"
        stored = dict(prepared.fetch_all(statement, [ids]))
    else:
        stored = dict(TaskRecord.objects.filter(task_id__in=ids).values_list("task_id", "position"))

    def accepted(transition: Transition) -> bool:
        # The rule of the upsert's WHERE (sql.py), read ahead; the upsert still applies it, should
        # the row move on meanwhile. A custom state may repeat its position with a new value.
        if transition.task_id not in stored:
            return not transition.expects_row
        at = states.position(transition.state, transition.attempt)
        return stored[transition.task_id] < at or (
            stored[transition.task_id] == at and states.is_custom(transition.state)
        )

    return [t for t in transitions if accepted(t)]


def _retrying(write: Callable[[], _T], state: str, subject: str) -> _T:
    """Run ``write``; on a lost or refused connection, retry it on a fresh one within the budget."""
    budget = conf.write_retry_seconds()
    if state not in states.TERMINAL_STATES:
        budget = min(budget, 5.0)
    deadline = time.monotonic() + budget
    pauses = WRITE_BACKOFF.delays()
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() >= deadline:
                raise
            # A long-lived worker's connection goes stale (server restart, idle timeout): drop
            # it so the next try opens a fresh one.
            logger.warning(
                "Recording %s for %s failed (%s); retrying on a fresh connection", state, subject, exc
            )
            connection.close()
            time.sleep(next(pauses))


def _ensure_encodable(transition: Transition) -> Transition:
    """Turn a result that JSON cannot encode into a FAILURE that says so."""
    if transition.args is not None and not _encodes(transition.args):
        transition = replace(transition, args=repr(transition.args))
    if transition.kwargs is not None and not _encodes(transition.kwargs):
        transition = replace(transition, kwargs=repr(transition.kwargs))
    if transition.progress is not None and not _encodes(transition.progress):
        transition = replace(transition, progress={"unencodable": repr(transition.progress)[:1000]})
    if transition.result is not None and not _encodes(transition.result):
        kind = type(transition.result).__name__
        return replace(
            transition,
            state=states.FAILURE,
            result=None,
            error={
                "type": "EncodeError",
                "message": f"The task returned a {kind}, which JSON cannot encode.",
            },
        )
    return transition


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _transition_key(transition: Transition) -> str:
    if not states.is_custom(transition.state):
        return ""
    payload = json.dumps([transition.state, transition.progress], sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _record_once(transition: Transition) -> dict[str, Any] | None:
    values = _values(transition)
    if connection.vendor == "postgresql":
        documents = _write_in_one_statement([values])
        document = documents[0] if documents else None
    else:
        document = _write_in_one_transaction(values)
    if document is None:
        if transition.celery_meta is not None:
            _store_celery_meta(transition)
        return None
    _written([document])
    return document


def _record_batch(transitions: list[Transition]) -> list[dict[str, Any]]:
    documents = _write_in_one_statement([_values(t) for t in transitions])
    if documents:
        _written(documents)
    return documents


# The two shapes of a pool child's STARTED-and-end statement, the likelier first.
_leading_order: list[tuple[str, ...]] = [(states.RECEIVED, states.STARTED), (states.STARTED,)]


def _record_leading_and_final(
    leading: tuple[str, ...], started: Transition, final: Transition
) -> list[dict[str, Any]]:
    """PostgreSQL: a held STARTED (after RECEIVED, when ``leading`` has it) and the final state
    that followed it, in one statement; or RECEIVED and STARTED (``leading`` RECEIVED alone,
    ``final`` the STARTED itself).

    Returns every document, or none when the lifecycle refused them: the task is not where the
    first of ``leading`` would be written (with RECEIVED: the attempt's PENDING or RETRY; without:
    its RECEIVED).
    """
    values = _values(final)
    values.update(
        version=len(leading) + 1,
        task_name=final.task_name or started.task_name,
        retries=max(final.attempt, started.attempt),
        worker=final.worker or started.worker,
        group_id=final.group_id or started.group_id or None,
        parent_id=final.parent_id or started.parent_id or None,
        date_started=started.at or values["date_started"] or values["date_updated"],
    )
    statement = sql.upsert_leading_and_final(_table(TaskRecord), _table(TaskEvent), leading)
    # The floor: what the task must have reached already (the attempt's RECEIVED before STARTED;
    # its PENDING or RETRY, both of rank 0, before RECEIVED).
    floor = states.position(
        states.RECEIVED if leading[0] == states.STARTED else states.PENDING, started.attempt
    )
    params = [*_params(values), states.position(leading[0], started.attempt), floor]
    documents = _documents_of(statement, params)
    if documents:
        _written(documents)
    return documents


def _written(documents: list[dict[str, Any]]) -> None:
    """Once ``documents`` are written (one statement's): publish them after the commit, in one
    hand-over to the publisher, and bring each of their groups along once."""
    transaction.on_commit(partial(_committed, documents), robust=True)
    groups = {d["group_id"]: d["owner_id"] for d in documents if d["group_id"]}
    for group_id, owner_id in groups.items():
        _touch_group(group_id, owner_id)


def _write_in_one_statement(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PostgreSQL: the upsert of each row and its event in one statement (atomic on its own).

    The rows are of distinct tasks; one floor is given for all, so a batch has none (0).
    """
    statement = sql.upsert_with_event(_table(TaskRecord), _table(TaskEvent), len(rows))
    params = [p for values in rows for p in _params(values)]
    return _documents_of(statement, [*params, rows[0]["floor"]])


def _documents_of(statement: str, params: list[Any]) -> list[dict[str, Any]]:
    """Run a PostgreSQL statement that returns the documents it wrote, one per row."""
    written = prepared.fetch_all(statement, params)
    return [json.loads(d) if isinstance(d, str) else d for (d,) in written]


def _write_in_one_transaction(values: dict[str, Any]) -> dict[str, Any] | None:
    """Other databases (SQLite): the upsert, then the event row, in one transaction."""
    with transaction.atomic():
        statement = sql.upsert(_table(TaskRecord))
        rows = list(TaskRecord.objects.raw(statement, [*_params(values), values["floor"]]))
        if not rows:
            return None
        document = task_document(rows[0])
        TaskEvent.objects.create(
            task_id=document["task_id"],
            version=document["version"],
            state=document["state"],
            document=document,
            created=rows[0].date_updated,
        )
    return document


def _committed(documents: list[dict[str, Any]]) -> None:
    """After the commit: push the documents, in order, and tell the project's receivers."""
    publisher.publish(
        [message for document in documents for message in addressing.task_messages(for_push(document))]
    )
    for document in documents:
        task_recorded.send(sender=TaskRecord, document=document)


def _store_celery_meta(transition: Transition) -> None:
    """Celery's view of a task whose transition the lifecycle refused as already recorded.

    The signal handlers often record a state before the result backend stores it (STARTED with
    ``task_track_started``, a RETRY recorded at publish), yet Celery's API must report what the
    backend stored. Like Celery's key-value backends, a stored SUCCESS is never overwritten. No
    version, no event, nothing published: the lifecycle did not change.
    """
    position = states.position(transition.state, transition.attempt)
    (
        TaskRecord.objects.filter(task_id=transition.task_id)
        .exclude(celery_meta__status=states.SUCCESS)
        # A store from earlier in the lifecycle than the one kept is late (a retried attempt's
        # RETRY, stored after the next attempt's STARTED was): it does not replace it.
        .exclude(**{f"celery_meta__{META_POSITION}__gt": position})
        .update(celery_meta=_stamped(transition.celery_meta, position))
    )


def record_group_members(group_id: str, members: list[str] | None, owner_id: int | None = None) -> None:
    """Record a group's exact membership and order (a saved group or a chord header), or forget
    it (``None``: a deleted group), and push the group document, whose total it changes."""
    if members is None:
        GroupRecord.objects.filter(group_id=group_id).update(members=None, total=None)
    else:
        save_members(group_id, members, owner_id=owner_id)
    _touch_group(group_id, owner_id)


def forget(task_id: str) -> None:
    """Delete a task and its events (Celery's ``forget()``, as django-celery-results deletes its
    row): REST then answers for it as for an unknown id. Nothing is published."""
    TaskRecord.objects.filter(task_id=task_id).delete()


def _stamped(meta: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
    return None if meta is None else {**meta, META_POSITION: position}


def _touch_group(group_id: str, owner_id: int | None) -> None:
    """Give the group its next version and publish the group document."""
    try:
        with transaction.atomic():
            group = touch_group(group_id, owner_id=owner_id)
            messages = addressing.group_messages(group_document(group))
            transaction.on_commit(partial(publisher.publish, messages), robust=True)
    except DatabaseError:
        # The task's own transition is recorded and published; the group document is derived
        # from the task rows and is brought up to date by the member's next change.
        logger.exception("Could not update group %s", group_id)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# Only JSON and time columns need the field's adaptation; the rest go to the driver as they are
# (this runs for every transition).
_ADAPTED = {
    f.column: f
    for f in TaskRecord._meta.concrete_fields
    if f.get_internal_type() in {"JSONField", "DateTimeField"}
}


def _params(values: dict[str, Any]) -> list[Any]:
    return [
        _ADAPTED[c].get_db_prep_save(values[c], connection) if c in _ADAPTED else values[c]
        for c in sql.COLUMNS
    ]


def _values(transition: Transition) -> dict[str, Any]:
    """The row a transition would write if it were the task's first."""
    now = timezone.now()
    state = transition.state
    return {
        "task_id": transition.task_id,
        "task_name": transition.task_name or "",
        "state": state,
        "version": 1,
        "position": states.position(state, transition.attempt),
        "transition_key": _transition_key(transition),
        "retries": transition.attempt,
        "result": transition.result if state == states.SUCCESS else None,
        "progress": transition.progress if states.is_custom(state) else None,
        "error": transition.error,
        "traceback": transition.traceback or "",
        "args": transition.args,
        "kwargs": transition.kwargs,
        "owner_id": transition.owner_id,
        "group_id": transition.group_id or None,
        "parent_id": transition.parent_id or None,
        "worker": transition.worker or None,
        "date_created": now,
        # A held STARTED keeps when the task started; the row's date_updated is always the
        # write's own time (feeds that missed messages read what changed since by it).
        "date_started": (transition.at or now) if state == states.STARTED else None,
        "date_done": now if state in states.TERMINAL_STATES else None,
        "date_updated": now,
        "celery_meta": _stamped(transition.celery_meta, states.position(state, transition.attempt)),
        # Not a column: the statement's floor (sql.py), the position the task must have reached.
        "floor": states.position(transition.requires, transition.attempt) if transition.requires else 0,
    }
