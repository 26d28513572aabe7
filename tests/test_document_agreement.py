"""The task document is defined once (taskstore.documents.TASK_FIELDS): the one the database
builds in the recorder's one-statement write (PostgreSQL) and the one Python builds (SQLite, REST)
are the same, key for key and format for format, for every state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT, child_env

STATES = {"PENDING", "RECEIVED", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"}


def test_the_cases_cover_every_state() -> None:
    from tests.support.document_agreement import lifecycles

    recorded = {t.state for lifecycle in lifecycles("x", 1) for t in lifecycle}
    assert recorded == STATES


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.django_db(transaction=True)]),
    ],
)
def test_each_write_stores_and_returns_the_document_python_builds(database: str, tmp_path: Path) -> None:
    if database == "postgresql":  # the database builds the document, in the test process
        from tests.support.document_agreement import compare_documents

        outcome = compare_documents("agree-pg")
    else:  # the recorder builds it, in a process of its own on a fresh SQLite file
        outcome = _compare_in_a_sqlite_process(tmp_path)
    assert outcome["vendor"] == database
    assert set(outcome["compared"]) >= STATES
    assert outcome["disagreements"] == []


def _compare_in_a_sqlite_process(tmp_path: Path) -> dict[str, Any]:
    env = child_env(f"sqlite:///{tmp_path / 'agree.sqlite3'}", None)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.document_agreement", "agree-lite"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


def test_the_database_renders_timestamps_in_the_documents_format() -> None:
    from taskstore.documents import TIMESTAMP_FORMAT
    from taskstore.sql import to_char_pattern

    assert to_char_pattern(TIMESTAMP_FORMAT) == 'YYYY"-"MM"-"DD"T"HH24":"MI":"SS"."US"Z"'
    with pytest.raises(ValueError):
        to_char_pattern("%j")


def test_a_field_added_to_the_list_reaches_both_builders() -> None:
    from taskstore.documents import TASK_FIELDS, unrecorded_document
    from taskstore.sql import document_expression

    expression = document_expression("w")
    assert [f.name for f in TASK_FIELDS if f"'{f.name}', " not in expression] == []
    assert list(unrecorded_document("t")) == [f.name for f in TASK_FIELDS if not f.recorded_only]
