"""Records every kind of transition and compares the document each write stored and returned with
the one taskstore.documents builds in Python from the row afterwards.

On PostgreSQL the recorder's one statement builds the document in the database
(taskstore.sql); elsewhere the recorder builds it in Python. Both follow
taskstore.documents.TASK_FIELDS, and this checks they agree, key for key and format for format.

Imported by the test on the test database; run as a process of its own
(``python -m tests.support.document_agreement PREFIX``, DATABASE_URL set) for a database the test
process does not hold, where it prints the disagreements as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

ERROR = {"type": "ValueError", "message": "no <good> — «é»"}


def lifecycles(prefix: str, owner_id: int) -> list[list[Any]]:
    """Every state, on a few tasks, each task's transitions in order."""
    from taskstore.recorder import Transition

    def t(task: str, state: str, **fields: Any) -> Transition:
        return Transition(task_id=f"{prefix}-{task}", state=state, **fields)

    return [
        [
            t(
                "ok",
                "PENDING",
                task_name="agree.ok",
                args=[1, "<b>é"],
                kwargs={"k": None},
                owner_id=owner_id,
                group_id=f"{prefix}-g",
            ),
            t("ok", "RECEIVED", worker="w@h"),
            t("ok", "STARTED", worker="w@h"),
            t("ok", "PROGRESS", progress={"current": 1, "total": 2}),
            t("ok", "RETRY", attempt=1, error=ERROR, traceback="Traceback: retry"),
            t("ok", "RECEIVED", attempt=1),
            t("ok", "STARTED", attempt=1, worker="w2@h"),
            t("ok", "SUCCESS", attempt=1, result={"value": [1, 2.5, None, "x"]}),
        ],
        [
            t("failed", "PENDING", parent_id=f"{prefix}-ok"),
            t("failed", "STARTED"),
            t("failed", "FAILURE", error=ERROR, traceback="Traceback (most recent call last): …"),
        ],
        [t("revoked", "PENDING"), t("revoked", "REVOKED", traceback="")],
        [t("rejected", "REJECTED", error={"type": "NotRegistered", "message": "No task"})],
    ]


def compare_documents(prefix: str) -> dict[str, Any]:
    """Record every lifecycle; return the states compared and each write whose stored or
    returned document differs from the Python-built one."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from taskstore import linger
    from taskstore.documents import task_document
    from taskstore.models import TaskEvent, TaskRecord
    from taskstore.recorder import Transition, record

    owner = get_user_model().objects.create(username=f"{prefix}-owner")
    found: list[dict[str, Any]] = []
    compared: set[str] = set()

    def compare(state: str, returned: dict[str, Any] | None) -> None:
        compared.add(state)
        if returned is None:
            found.append({"state": state, "problem": "refused"})
            return
        row = TaskRecord.objects.get(task_id=returned["task_id"])
        expected = task_document(row)
        stored = TaskEvent.objects.get(task_id=row.task_id, version=row.version).document
        for name, document in (("returned", returned), ("stored", stored)):
            if document != expected:
                found.append({"state": state, "which": name, "document": document, "expected": expected})

    for lifecycle in lifecycles(prefix, owner.pk):
        for transition in lifecycle:
            compare(transition.state, record(transition))
    # A held STARTED and its final state: one statement on PostgreSQL (taskstore.linger).
    started = Transition(task_id=f"{prefix}-held", state="STARTED", task_name="agree.held", worker="w@h")
    compare("PENDING", record(replace(started, state="PENDING")))
    compare("RECEIVED", record(replace(started, state="RECEIVED")))
    linger.held.hold(replace(started, at=TaskRecord.objects.get(task_id=started.task_id).date_updated), 60)
    compare("SUCCESS after a held STARTED", record(replace(started, state="SUCCESS", result=7)))
    return {"vendor": connection.vendor, "compared": sorted(compared), "disagreements": found}


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    import django

    django.setup()
    from taskstore.publisher import publisher

    print(json.dumps(compare_documents(sys.argv[1]), default=str))
    publisher.flush(timeout=5.0)
