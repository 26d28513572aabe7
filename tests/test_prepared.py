"""The recorder's statements are prepared where the connection allows it (taskstore.prepared)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskstore import prepared
from taskstore.models import TaskEvent
from taskstore.recorder import Transition, record

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

UPSERT = '%INSERT INTO "taskstore_taskrecord"%'


def _prepared_upserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [UPSERT])
        return int(cursor.fetchone()[0])


def _record_some(count: int) -> None:
    for _ in range(count):
        assert record(Transition(task_id=f"p-{uuid4()}", state="PENDING", task_name="t.add")) is not None


@pytest.fixture
def fresh_connection() -> Iterator[None]:
    # Prepared statements live as long as their connection: start from one that has none.
    connection.close()
    yield
    connection.close()


def test_the_upsert_is_prepared_once_it_has_run_prepare_threshold_times(fresh_connection: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    assert prepared.preparing()
    threshold = connection.connection.prepare_threshold
    # psycopg prepares a query on the run that follows its threshold-th.
    _record_some(threshold)
    assert _prepared_upserts() == 0
    _record_some(1)
    assert _prepared_upserts() == 1
    # Still logged like any query, and still Django's exception classes (the recorder's retry).
    with CaptureQueriesContext(connection) as queries:
        _record_some(1)
    assert len(queries.captured_queries) == 1
    assert TaskEvent.objects.filter(state="PENDING").count() == threshold + 2


def test_without_prepare_threshold_nothing_is_prepared(fresh_connection: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # Django's default; what PgBouncer needs
    assert not prepared.preparing()
    _record_some(8)
    assert _prepared_upserts() == 0
    assert TaskEvent.objects.filter(state="PENDING").count() == 8
