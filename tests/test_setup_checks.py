"""What catches a project's setup mistakes: system checks, settings refused at start, and the
defaults taskstore chooses itself (Redis read timeouts, the cleanup schedule)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.beat import Service
from celery.signals import beat_init
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from taskstore import conf, layers, schedule

ROOT = Path(__file__).resolve().parent.parent
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
OWNER = "taskstore.middleware.TaskOwnerMiddleware"


def ids(**overrides: object) -> set[str]:
    """The taskstore check ids that fire with ``overrides`` applied to the test settings."""
    with override_settings(**overrides):
        return {m.id for m in run_checks() if m.id and m.id.startswith("taskstore.")}


def test_the_test_settings_pass_every_check() -> None:
    from django.conf import settings

    # Without a Redis to test with, the tests run on the in-memory layer, which W002 reports.
    in_memory = settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert ids() == ({"taskstore.W002"} if in_memory else set())


@pytest.mark.parametrize("layers_setting", [{}, {"other": {"BACKEND": "x"}}, {"default": {}}])
def test_no_default_channel_layer_is_an_error(layers_setting: dict[str, object]) -> None:
    assert "taskstore.E004" in ids(CHANNEL_LAYERS=layers_setting)


def test_the_in_memory_layer_is_a_warning_without_debug_only() -> None:
    memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert "taskstore.W002" in ids(CHANNEL_LAYERS=memory, DEBUG=False)
    assert "taskstore.W002" not in ids(CHANNEL_LAYERS=memory, DEBUG=True)


def test_a_redis_host_with_a_short_read_timeout_is_a_warning() -> None:
    short = layers.redis_channel_layer("redis://127.0.0.1:6379/9")
    short["CONFIG"]["hosts"][0]["socket_timeout"] = 5
    assert "taskstore.W004" in ids(CHANNEL_LAYERS={"default": short})
    assert "taskstore.W004" not in ids(CHANNEL_LAYERS={"default": layers.redis_channel_layer("redis://x")})


def test_the_owner_middleware_missing_or_before_authentication() -> None:
    from django.conf import settings as live

    without = [m for m in live.MIDDLEWARE if m != OWNER]
    assert "taskstore.W003" in ids(MIDDLEWARE=without)
    before = [OWNER, *without]
    assert "taskstore.E005" in ids(MIDDLEWARE=before)
    after = [*without, OWNER]
    assert ids(MIDDLEWARE=after) & {"taskstore.W003", "taskstore.E005"} == set()


def test_another_result_backend_is_reported_as_information() -> None:
    assert "taskstore.I001" in ids(CELERY_RESULT_BACKEND="redis://127.0.0.1:6379/0")
    assert "taskstore.I001" not in ids(CELERY_RESULT_BACKEND="taskstore.backend:DatabaseBackend")


def test_retention_scheduled_nowhere_is_a_warning() -> None:
    assert "taskstore.W005" in ids(TASKSTORE_CLEANUP_INTERVAL=0)
    by_hand = {"mine": {"task": "taskstore.tasks.cleanup", "schedule": 60.0}}
    assert "taskstore.W005" not in ids(TASKSTORE_CLEANUP_INTERVAL=0, CELERY_BEAT_SCHEDULE=by_hand)


def test_pickle_is_refused() -> None:
    assert {"taskstore.E001", "taskstore.E002"} <= ids(
        CELERY_ACCEPT_CONTENT=["json", "pickle"], CELERY_TASK_SERIALIZER="pickle"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKSTORE_RATE_LIMIT", "fast"),
        ("TASKSTORE_MAX_SUBSCRIPTIONS", 0),
        ("TASKSTORE_MAX_SUBSCRIPTIONS", True),
        ("TASKSTORE_RECONCILE_INTERVAL", -1),
        ("TASKSTORE_SUBMITTABLE_TASKS", "myapp.tasks.resize"),
        ("TASKSTORE_ANONYMOUS_SUBMIT", "yes"),
        ("TASKSTORE_WEBSOCKET_PREFIX", "ws?/"),
        ("TASKSTORE_STARTED_LINGER", -0.5),
        ("TASKSTORE_RATE_BURST", 1.5),
        ("TASKSTORE_MAX_FRAME_BYTES", 100),
        ("TASKSTORE_WATCH_QUEUES", "celery"),
        ("TASKSTORE_METRICS_TOKEN", "short"),
    ],
)
def test_a_bad_setting_value_is_named(name: str, value: object) -> None:
    with override_settings(**{name: value}):
        found = conf.problems()
    assert len(found) == 1
    assert found[0].startswith(f"{name} must be")
    assert repr(value) in found[0]


def test_a_bad_setting_is_refused_where_it_is_read_and_by_the_system_checks() -> None:
    with override_settings(TASKSTORE_MAX_SUBSCRIPTIONS="many", TASKSTORE_CLEANUP_INTERVAL="hourly"):
        with pytest.raises(
            ImproperlyConfigured, match=r"^TASKSTORE_MAX_SUBSCRIPTIONS must be a whole number"
        ):
            conf.max_subscriptions()
        messages = [m for m in run_checks() if m.id == "taskstore.E006"]
    assert sorted(m.msg.split()[0] for m in messages) == [
        "TASKSTORE_CLEANUP_INTERVAL",
        "TASKSTORE_MAX_SUBSCRIPTIONS",
    ]


def test_each_setting_has_its_default_and_its_type(settings: Any) -> None:
    for setting in conf.SETTINGS:
        if hasattr(settings, setting.name):
            delattr(settings, setting.name)
    assert conf.problems() == []
    assert conf.submittable_tasks() == () and conf.watch_queues() == ()
    assert conf.anonymous_submit() is False  # None: DEBUG's value (off in the tests)
    settings.DEBUG = True
    assert conf.anonymous_submit() is True
    assert (conf.max_subscriptions(), conf.rate_burst(), conf.max_frame_bytes()) == (200, 100, 16384)
    assert (conf.send_buffer_bytes(), conf.push_result_limit()) == (256 * 1024, 64 * 1024)
    assert (conf.result_expires(), conf.token_max_age(), conf.cleanup_batch()) == (604800, 604800, 500)
    assert conf.cleanup_interval() == 3600.0 and conf.reconcile_interval() == 5.0
    assert conf.write_retry_seconds() == 30.0 and conf.started_linger() == 0.05
    assert (conf.worker_heartbeat(), conf.worker_lost_after(), conf.monitor_interval()) == (5.0, 30.0, 5.0)
    assert conf.websocket_prefix() == "ws/" and conf.metrics_token() is None
    assert conf.websocket_path("feed") == "/ws/feed/"
    # Numbers that may be fractional read as floats even when written whole.
    settings.TASKSTORE_RATE_LIMIT = 20
    assert isinstance(conf.rate_limit(), float)


def test_the_settings_table_in_the_docs_matches_the_rules() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`TASKSTORE_"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {setting.name for setting in conf.SETTINGS}
    for setting in conf.SETTINGS:
        _, default, rule, _ = rows[setting.name]
        assert default.startswith(f"`{setting.default!r}`"), setting.name
        assert rule == setting.rule.describe, setting.name


def test_a_bad_setting_stops_the_process_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad_settings.py").write_text("from tests.settings import *\nTASKSTORE_RATE_LIMIT = 'fast'\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bad_settings", "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        "ImproperlyConfigured: TASKSTORE_RATE_LIMIT must be a number, 1 or more, not 'fast'." in done.stderr
    )


def test_redis_hosts_without_a_read_timeout_get_one() -> None:
    configured = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://a:6379/0", ("b", 6380), {"address": "redis://c"}]},
        },
        "own": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://d", "socket_timeout": 60}]},
        },
        "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }
    assert layers.fill_read_timeouts(configured) == ["default"]
    hosts = configured["default"]["CONFIG"]["hosts"]
    assert [h["address"] for h in hosts] == ["redis://a:6379/0", "redis://b:6380", "redis://c"]
    assert all(h["socket_timeout"] == layers.READ_TIMEOUT_SECONDS for h in hosts)
    assert configured["own"]["CONFIG"]["hosts"] == [{"address": "redis://d", "socket_timeout": 60}]


def beat_service(tmp_path: Path, beat_schedule: dict[str, object]) -> Service:
    app = Celery("beat-test", set_as_current=False)
    app.conf.beat_schedule = beat_schedule
    return Service(app=app, schedule_filename=str(tmp_path / "schedule"))


def test_beat_schedules_the_cleanup_when_it_starts(tmp_path: Path) -> None:
    service = beat_service(tmp_path, {})
    beat_init.send(sender=service)
    entry = service.scheduler.schedule[schedule.ENTRY_NAME]
    assert entry.task == "taskstore.tasks.cleanup"
    assert entry.schedule.run_every.total_seconds() == conf.cleanup_interval()


def test_beat_keeps_a_cleanup_the_project_scheduled(tmp_path: Path) -> None:
    service = beat_service(tmp_path, {"nightly": {"task": "taskstore.tasks.cleanup", "schedule": 86400.0}})
    beat_init.send(sender=service)
    assert schedule.ENTRY_NAME not in service.scheduler.schedule
    assert "nightly" in service.scheduler.schedule


@override_settings(TASKSTORE_CLEANUP_INTERVAL=0)
def test_beat_schedules_nothing_when_the_interval_is_zero(tmp_path: Path) -> None:
    service = beat_service(tmp_path, {})
    beat_init.send(sender=service)
    assert schedule.ENTRY_NAME not in service.scheduler.schedule
