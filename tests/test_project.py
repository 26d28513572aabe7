"""Project-level promises: migrations match the models, bad settings fail loudly, no pickle."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from taskstore.checks import check_serializers
from tests.support.processes import ROOT


@pytest.mark.django_db
def test_migrations_are_complete() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/x"),
        ("CHANNEL_LAYER_CAPACITY", "lots"),
        ("TASKSTORE_ANONYMOUS_SUBMIT", "2"),
    ],
)
def test_a_bad_environment_value_fails_at_start_naming_it(name: str, value: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "1", name: value}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert name in proc.stderr


def test_a_missing_secret_key_outside_debug_fails_naming_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "0"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY" in proc.stderr


def test_celery_accepts_json_only() -> None:
    from realtime.celery import app

    assert app.conf.accept_content == ["json"]
    assert app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    with override_settings(CELERY_ACCEPT_CONTENT=["json", "pickle"]):
        assert [e.id for e in check_serializers()] == ["taskstore.E001"]
    assert check_serializers() == []
