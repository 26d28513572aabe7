"""``taskstore.backend:DatabaseBackend``: a Celery result backend on the taskstore tables.

A drop-in for Celery's own backends. Celery's result API (``AsyncResult.state``, ``info``,
``get()``, ``children``, …) reports what Celery stored through this backend, exactly as with
Redis: each store is kept in the task row's ``celery_meta`` (status, the serialised exception,
children) beside the full lifecycle that REST, the live push and the admin show. So a task is
PENDING to Celery until it runs, STARTED only with ``task_track_started``, and nothing at all
when it asked for ``ignore_result``, while its document still goes through RECEIVED and STARTED.

Writes go through the recorder like every other source. docs/result-backend.md has the details
and the differences from Redis.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from celery import Celery
from celery import states as celery_states
from celery.backends.base import BaseBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import GroupResult, result_from_tuple
from celery.utils.saferepr import saferepr
from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.exceptions import EncodeError
from kombu.utils.functional import LRUCache

from taskstore import states
from taskstore.failures import error_from_celery, error_from_exception, serialize_exception
from taskstore.models import GroupRecord, TaskRecord
from taskstore.owner import current_owner_id
from taskstore.recorder import Transition, forget, record, record_group_members
from taskstore.retention import delete_expired

# How many finished task ids get_many() remembers for is_cached().
_READ_READY_LIMIT = 10_000

# The columns Celery's view of a task is read from.
_META_COLUMNS = (
    "celery_meta", "result", "error", "traceback", "date_done", "group_id", "parent_id",
    "task_name", "args", "kwargs", "worker", "retries",
)  # fmt: skip


class DatabaseBackend(BaseBackend):
    """Stores results through the recorder and reads Celery's view of them from the task rows."""

    persistent = True
    # get_many() reads every member still waiting in one query per interval.
    supports_native_join = True
    # Set by BaseBackend.__init__ (Celery's backend API), not declared by celery-types.
    app: Celery
    expires: float | None
    _cache: MutableMapping[str, dict[str, Any]]

    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.url = url  # what Celery's as_uri() shows (the worker's banner, `celery report`)
        # The finished tasks get_many() has read. A chord's unlock names the header member that
        # failed ("Dependency … raised …", as Redis does) only among results is_cached() knows,
        # and Celery's result cache is off by default (result_cache_max = -1).
        self._read_ready: LRUCache[str, bool] = LRUCache(limit=_READ_READY_LIMIT)

    # --- writing -------------------------------------------------------------------------------

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Store as Celery's backends do; a live exception also gives the document its error."""
        if isinstance(result, BaseException):
            # Celery serialises the exception before _store_result sees it; the document's
            # message is the exception's own str().
            kwargs["error"] = error_from_exception(result)
        return super().store_result(task_id, result, state, traceback, request=request, **kwargs)

    def prepare_exception(self, exc: BaseException, serializer: str | None = None) -> dict[str, Any]:
        """Celery's serialised exception (type, module, arguments), in plain JSON."""
        return serialize_exception(exc)

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        error: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if state == states.SUCCESS:
            _check_encodable(result)
        retries = int(getattr(request, "retries", 0) or 0) if request is not None else 0
        if state in celery_states.EXCEPTION_STATES:
            error = error or error_from_celery(result)
        lifecycle_state, error = _lifecycle(state, result, error)
        transition = Transition(
            task_id=task_id,
            state=lifecycle_state,
            # A retry opens the next attempt (see taskstore.states).
            attempt=retries + 1 if state == states.RETRY else retries,
            task_name=getattr(request, "task", "") or "" if request is not None else "",
            result=result if state == states.SUCCESS else None,
            progress=result if states.is_custom(state) else None,
            error=error if state in celery_states.EXCEPTION_STATES else None,
            traceback=traceback or "",
            worker=getattr(request, "hostname", None) if request is not None else None,
            group_id=getattr(request, "group", None) if request is not None else None,
            parent_id=getattr(request, "parent_id", None) if request is not None else None,
            celery_meta=self._celery_meta(result, state, request),
        )
        record(transition)
        return result

    def _celery_meta(self, result: Any, state: str, request: Any) -> dict[str, Any]:
        """What Celery's API reports after this store (the result of SUCCESS lives in its column)."""
        meta: dict[str, Any] = {"status": state}
        if state != states.SUCCESS and result is not None:
            meta["result"] = _jsonable(result)
        children = self.current_task_children(request)
        if children:
            meta["children"] = children
        delivery_info = getattr(request, "delivery_info", None) if request is not None else None
        if delivery_info and delivery_info.get("routing_key"):
            meta["queue"] = delivery_info["routing_key"]
        return meta

    # --- reading -------------------------------------------------------------------------------

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        close_old_connections()
        row = TaskRecord.objects.filter(task_id=task_id).values(*_META_COLUMNS).first()
        return self._meta(task_id, row)

    def _meta(self, task_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
        """Celery's meta dict for one task row (PENDING when Celery stored nothing for it)."""
        if row is None or not row["celery_meta"]:
            return {"status": celery_states.PENDING, "result": None}
        stored = row["celery_meta"]
        status = stored["status"]
        if status == states.SUCCESS:
            result = row["result"]
        elif "result" in stored:
            result = stored["result"]
        elif status in celery_states.EXCEPTION_STATES:
            result = _legacy_exception(row["error"])
        else:
            result = None
        if status in celery_states.EXCEPTION_STATES:
            result = self.exception_to_python(result)
        meta: dict[str, Any] = {
            "task_id": task_id,
            "status": status,
            "result": result,
            "traceback": row["traceback"] or None,
            "children": stored.get("children", []),
            "date_done": row["date_done"] if status in celery_states.READY_STATES else None,
        }
        if row["group_id"]:
            meta["group_id"] = row["group_id"]
        if row["parent_id"]:
            meta["parent_id"] = row["parent_id"]
        if self.app.conf.find_value_for_key("extended", "result"):
            meta.update(
                name=row["task_name"] or None,
                args=row["args"],
                kwargs=row["kwargs"],
                worker=row["worker"],
                retries=row["retries"],
                queue=stored.get("queue"),
            )
        return meta

    def get_many(
        self,
        task_ids: Iterable[str],
        timeout: float | None = None,
        interval: float | None = 0.5,
        no_ack: bool = True,
        on_message: Any = None,
        on_interval: Any = None,
        max_iterations: int | None = None,
        READY_STATES: frozenset[str] = celery_states.READY_STATES,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(task_id, meta)`` for each task as it becomes ready, in the order they do.

        One query per ``interval`` reads every task still waiting (Celery's Redis backend is
        told by pub/sub instead). Raises Celery's ``TimeoutError`` after ``timeout`` seconds.
        """
        interval = 0.5 if interval is None else interval
        waiting = set(task_ids)
        for task_id in list(waiting):
            cached = self._cache.get(task_id)
            if cached is not None and cached["status"] in READY_STATES:
                waiting.discard(task_id)
                yield task_id, cached
        elapsed = 0.0
        iterations = 0
        while waiting:
            for task_id, meta in self._ready(waiting, READY_STATES):
                self._cache[task_id] = meta
                self._read_ready[task_id] = True
                waiting.discard(task_id)
                if on_message is not None:
                    on_message(meta)
                yield task_id, meta
            if not waiting:
                break
            if timeout is not None and elapsed >= timeout:
                raise CeleryTimeoutError(f"Operation timed out ({timeout})")
            if on_interval:
                on_interval()
            # Celery's own polling loop: never sleep past the deadline.
            nap = interval if timeout is None else min(interval, timeout - elapsed)
            time.sleep(nap)
            elapsed += nap
            iterations += 1
            if max_iterations and iterations >= max_iterations:
                break

    def is_cached(self, task_id: str) -> bool:
        """Whether ``task_id`` is in Celery's result cache or was read finished by get_many()."""
        return task_id in self._cache or task_id in self._read_ready

    def _ready(self, task_ids: set[str], ready_states: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
        close_old_connections()
        rows = TaskRecord.objects.filter(task_id__in=task_ids).values("task_id", *_META_COLUMNS)
        metas = [(row["task_id"], self._meta(row["task_id"], row)) for row in rows]
        return [(task_id, meta) for task_id, meta in metas if meta["status"] in ready_states]

    # --- the rest of Celery's backend API ------------------------------------------------------

    def _forget(self, task_id: str) -> None:
        forget(task_id)

    def cleanup(self) -> None:
        """Celery's ``celery.backend_cleanup``: delete tasks finished ``result_expires`` ago."""
        if self.expires:
            delete_expired(float(self.expires))

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        """With ``result_backend_always_retry``, retry what a dropped connection raises."""
        return isinstance(exc, (InterfaceError, OperationalError))

    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        record_group_members(group_id, [r.id for r in result.results or []], owner_id=current_owner_id())
        return result

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        group = GroupRecord.objects.filter(group_id=group_id).first()
        if group is None or group.members is None:
            return None
        members = [[[member, None], None] for member in group.members]
        return {"result": result_from_tuple(((group_id, None), members), self.app)}

    def _delete_group(self, group_id: str) -> None:
        record_group_members(group_id, None)

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> Any:
        """Remember the chord header's exact membership, then unlock the body as usual."""
        group_id, results = header_result_args[0], header_result_args[1]
        record_group_members(group_id, [r.id for r in results], owner_id=current_owner_id())
        return super().apply_chord(header_result_args, body, **kwargs)


def _lifecycle(state: str, result: Any, error: dict[str, str] | None) -> tuple[str, dict[str, str] | None]:
    """The lifecycle's state and error for a store.

    Celery stores a message for a task the worker does not know as a FAILURE (NotRegistered);
    the lifecycle calls it REJECTED, as the ``task_unknown`` signal does (docs/reliability.md).
    """
    if (
        state == states.FAILURE
        and isinstance(result, dict)
        and result.get("exc_type") == "NotRegistered"
        and result.get("exc_module") == "celery.exceptions"
    ):
        name = (result.get("exc_message") or ["?"])[0]
        return states.REJECTED, {"type": "NotRegistered", "message": f"No task named {name!r} is registered."}
    return state, error


def _check_encodable(result: Any) -> None:
    """Refuse a result JSON cannot hold, as Celery's serializer would: the task then fails."""
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        kind = type(result).__name__
        raise EncodeError(f"The task returned a {kind}, which JSON cannot encode.") from exc


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return saferepr(value)
    return value


def _legacy_exception(error: dict[str, Any] | None) -> dict[str, Any]:
    """Celery's form of an error recorded before exceptions were kept whole: type and message."""
    error = error or {"type": "Exception", "message": ""}
    name = str(error.get("type") or "Exception")
    builtin = getattr(builtins, name, None)
    module = "builtins" if isinstance(builtin, type) and issubclass(builtin, BaseException) else None
    return {"exc_type": name, "exc_message": [error.get("message", "")], "exc_module": module}
