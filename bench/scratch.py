"""What a bench makes for itself and throws away: a PostgreSQL database, a free port."""

from __future__ import annotations

import socket


def create_database(postgres: str, name: str) -> str:
    """Create database ``name`` afresh on the server at ``postgres``; return its URL."""
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres}/{name}"


def drop_database(postgres: str, name: str) -> None:
    """Drop database ``name``, closing whatever is still connected to it."""
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    """A TCP port nothing listens on now, for a server the bench starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
