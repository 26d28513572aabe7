"""The recorder's PostgreSQL statements, prepared once per connection where the project allows it.

Every transition runs one long statement (the upsert of 22 columns, an event row each, each
document built in the statement). Django's psycopg backend binds parameters on the client, so
PostgreSQL receives each execution as a new text and parses, analyses and plans it again: that
was 45% of the CPU the database spent on these statements (``perf`` on its backends,
docs/benchmarks.md).

Django turns psycopg's prepared statements off unless the database's ``OPTIONS`` set
``prepare_threshold`` (connection poolers such as PgBouncer in transaction mode cannot keep
them). Where a project sets it (the example project does: docs/configuration.md), taskstore runs
its statements through a plain psycopg cursor of the same connection, which binds on the server,
so psycopg prepares each statement shape once it has run ``prepare_threshold`` times and then
sends only its parameters. Elsewhere (the option unset, or psycopg 2) they go through Django's own
cursor. Either way the cursor is wrapped by Django's, so query logging, ``execute_wrapper`` hooks
and Django's exception classes apply as to any query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection


def fetch_all(statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``statement`` (``%s`` placeholders) on the default connection; return its rows."""
    with _cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def preparing() -> bool:
    """Whether the default connection lets psycopg prepare statements (``prepare_threshold``)."""
    connection.ensure_connection()
    return getattr(connection.connection, "prepare_threshold", None) is not None


def _cursor() -> Any:
    if not preparing():
        return connection.cursor()
    from psycopg import Cursor

    # A plain psycopg Cursor binds on the server: the connection's own cursor factory is Django's
    # client-side one, whose statements psycopg cannot prepare.
    server_side: Any = Cursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(server_side)
    return connection.make_cursor(server_side)
