"""A pytest plugin (``-p tests.celery_suite.plugin``) loaded into Celery's integration suite.

Celery's suite reads its broker and result backend from ``TEST_BROKER`` / ``TEST_BACKEND``. This
plugin adds what a run against taskstore needs and keeps both runs on their own Redis database:

- with ``DJANGO_SETTINGS_MODULE`` set (the taskstore run), Django is set up before Celery's
  ``conftest`` builds the app, so the backend, the recorder and the signal handlers have the ORM;
- Celery's test tasks talk to Redis through ``get_redis_connection()``, which always opens
  database 0; it is pointed at ``CONFORMANCE_REDIS_URL`` instead, so a run touches no database
  but its own.
"""

from __future__ import annotations

import os

import redis

if os.environ.get("DJANGO_SETTINGS_MODULE"):
    import django

    django.setup()


def _redis_connection() -> redis.StrictRedis:
    # Celery's callers block on reads far longer than redis-py's default socket timeout.
    return redis.StrictRedis.from_url(os.environ["CONFORMANCE_REDIS_URL"], socket_timeout=None)


def _point_side_channel_at_own_database() -> None:
    from t.integration import tasks

    tasks.get_redis_connection = _redis_connection


_point_side_channel_at_own_database()


class _NamedLikeRedis(str):
    """A backend setting whose ``startswith("redis")`` is true: Celery's own checks then run the
    tests they keep for the Redis result backend against this one too."""

    __slots__ = ()

    def startswith(self, prefix: object, *args: object) -> bool:  # type: ignore[override]
        prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
        return any(str(p).startswith("redis") for p in prefixes) or super().startswith(prefix, *args)  # type: ignore[arg-type]


if os.environ.get("CONFORMANCE_RUN_REDIS_ONLY_TESTS") == "1":
    import pytest

    @pytest.fixture(autouse=True)
    def _run_redis_only_tests(celery_app: object) -> None:
        """Make the suite's "Requires redis result backend." checks pass for this backend."""
        conf = celery_app.conf  # type: ignore[attr-defined]
        conf.result_backend = _NamedLikeRedis(conf.result_backend)
