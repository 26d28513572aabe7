"""``taskstore.backend:DatabaseBackend``: a Celery result backend on the taskstore tables.

``AsyncResult.get()``, ``update_state()`` progress, groups and chords work on the same rows the
live push reads. Writes go through the recorder like every other source.
"""

from __future__ import annotations

import builtins
from typing import Any

from celery import states as celery_states
from celery.backends.base import BaseBackend
from celery.result import GroupResult, result_from_tuple
from django.db import close_old_connections

from taskstore import states
from taskstore.errors import error_from_celery
from taskstore.groups import save_members
from taskstore.models import GroupRecord, TaskRecord
from taskstore.owner import current_owner_id
from taskstore.recorder import Transition, record


class DatabaseBackend(BaseBackend):
    """Stores results through the recorder and reads them from the task rows."""

    persistent = True
    supports_native_join = False

    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.url = url

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        retries = int(getattr(request, "retries", 0) or 0) if request is not None else 0
        transition = Transition(
            task_id=task_id,
            state=state,
            # A retry opens the next attempt (see taskstore.states).
            attempt=retries + 1 if state == states.RETRY else retries,
            task_name=getattr(request, "task", "") or "" if request is not None else "",
            result=result if state == states.SUCCESS else None,
            progress=result if states.is_custom(state) else None,
            error=error_from_celery(result) if state in celery_states.EXCEPTION_STATES else None,
            traceback=traceback or "",
            worker=getattr(request, "hostname", None) if request is not None else None,
            group_id=getattr(request, "group", None) if request is not None else None,
            parent_id=getattr(request, "parent_id", None) if request is not None else None,
        )
        record(transition)
        return result

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        close_old_connections()
        row = (
            TaskRecord.objects.filter(task_id=task_id)
            .values("state", "result", "error", "traceback", "date_done", "group_id", "parent_id")
            .first()
        )
        if row is None:
            return {"status": celery_states.PENDING, "result": None}
        state = row["state"]
        if state in celery_states.EXCEPTION_STATES:
            result: Any = self._exception(row["error"])
        elif state == states.SUCCESS:
            result = row["result"]
        else:
            result = None
        return {
            "task_id": task_id,
            "status": state,
            "result": result,
            "traceback": row["traceback"] or None,
            "date_done": row["date_done"],
            "children": [],
            "group_id": row["group_id"],
            "parent_id": row["parent_id"],
        }

    def _exception(self, error: dict[str, Any] | None) -> BaseException:
        error = error or {"type": "Exception", "message": ""}
        name = str(error.get("type") or "Exception")
        builtin = getattr(builtins, name, None)
        module = "builtins" if isinstance(builtin, type) and issubclass(builtin, BaseException) else None
        return self.exception_to_python(
            {"exc_type": name, "exc_message": [error.get("message", "")], "exc_module": module}
        )

    def _forget(self, task_id: str) -> None:
        TaskRecord.objects.filter(task_id=task_id).delete()

    def _save_group(self, group_id: str, result: GroupResult) -> GroupResult:
        save_members(group_id, [r.id for r in result.results], owner_id=current_owner_id())
        return result

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        group = GroupRecord.objects.filter(group_id=group_id).first()
        if group is None or group.members is None:
            return None
        members = [[[member, None], None] for member in group.members]
        return {"result": result_from_tuple([[group_id, None], members], self.app)}

    def _delete_group(self, group_id: str) -> None:
        GroupRecord.objects.filter(group_id=group_id).update(members=None, total=None)

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> Any:
        """Remember the chord header's exact membership, then unlock the body as usual."""
        group_id, results = header_result_args[0], header_result_args[1]
        save_members(group_id, [r.id for r in results], owner_id=current_owner_id())
        return super().apply_chord(header_result_args, body, **kwargs)
