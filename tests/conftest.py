"""Shared fixtures: real services, the test database for child processes, a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
import redis

from tests import services
from tests.support import backends
from tests.support.processes import ManagedProcess, celery_worker, child_env, wait_for

_PROBLEMS = {
    "postgres": services.postgres_problem,
    "redis": services.redis_problem,
    "browser": services.browser_problem,
}


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_a_deadlock() -> Iterator[None]:
    """The flush after each transactional test truncates every table at once. A worker still
    running may write at that moment (a RECEIVED that lingered past its task's end: the write is
    refused, but it locks the task table, then the event table), and PostgreSQL ends one of the
    two as a deadlock. The worker's write is retried by the recorder; the flush is retried here."""
    from django.core.management.base import CommandError
    from django.core.management.commands import flush
    from django.db import OperationalError

    handle = flush.Command.handle

    def retrying(self: flush.Command, **options: object) -> None:
        for attempt in range(5):
            try:
                return handle(self, **options)
            except CommandError as error:
                if attempt == 4 or not isinstance(error.__cause__, OperationalError):
                    raise

    with mock.patch.object(flush.Command, "handle", retrying):
        yield


@pytest.fixture(autouse=True)
def _consumer_thread_connections_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the database, close the connection of the thread where
    in-process consumers and the periodic checks read (asgiref's one thread for thread-sensitive
    calls). Connections live for CONN_MAX_AGE there: one left open by the last test would keep
    the test database from being dropped at the end of the run."""
    yield
    if "django_db_setup" in request.fixturenames:
        from asgiref.sync import SyncToAsync
        from django.db import connections

        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked postgres/redis/browser skip when the service is away, and fail under CI=true."""
    for marker, problem in _PROBLEMS.items():
        if item.get_closest_marker(marker) is None:
            continue
        reason = problem()
        if reason is None:
            continue
        if services.IN_CI:
            pytest.fail(f"CI=true and a required service is missing: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis, flushed once at the start of the session."""
    if services.redis_problem():
        pytest.skip(services.redis_problem())
    redis.Redis.from_url(services.REDIS_URL).flushdb()
    return services.REDIS_URL


@pytest.fixture(scope="session")
def test_database_url(django_db_setup: None, django_db_blocker: object) -> str:
    """A DATABASE_URL that points child processes at this session's test database."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("child processes need the PostgreSQL test database")
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


@pytest.fixture(scope="session")
def service_env(test_database_url: str, redis_url: str) -> dict[str, str]:
    """The environment for service processes (worker, daphne) on the test database and Redis."""
    return child_env(test_database_url, redis_url)


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """A real prefork ``celery -A realtime worker`` with two children, for the whole session."""
    proc = celery_worker(service_env, 2)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_results_worker(service_env: dict[str, str], redis_url: str) -> Iterator[ManagedProcess]:
    """A real prefork worker storing results in Celery's Redis backend, on a queue of its own."""
    proc = backends.redis_backend_worker(service_env, redis_url)
    yield proc
    proc.stop()


@pytest.fixture(params=["taskstore", "redis"])
def target(request: pytest.FixtureRequest, redis_url: str) -> Iterator[backends.Target]:
    """Each result backend in turn with a real worker: taskstore's, then Celery's Redis one.

    The test ends once the worker has recorded everything it sent: a result read through the
    backend can come before the signal handlers' last writes, and the database flush that
    follows a test must not race them.
    """
    from django.utils import timezone

    started = timezone.now()
    if request.param == "taskstore":
        from realtime.celery import app

        request.getfixturevalue("worker")
        yield backends.Target("taskstore", app, None)
    else:
        request.getfixturevalue("redis_results_worker")
        app = backends.redis_app(redis_url, redis_url)
        yield backends.Target("redis", app, backends.REDIS_QUEUE)
        app.close()
    wait_for(lambda: backends.settled(started), 30, "the test's tasks to be recorded to their end")


@pytest.fixture
def gates(redis_url: str) -> Iterator[backends.Gates]:
    """Opens the gates the gated test tasks wait on."""
    opener = backends.Gates(redis_url)
    yield opener
    opener.close()
