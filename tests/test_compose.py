"""The production-shaped stack in docker-compose.yml and the Dockerfile it builds.

No Docker engine is needed: the files are parsed and their structure checked. When a
``docker compose`` CLI is present, it also validates and interpolates the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dj_database_url
import pytest
import yaml

import taskstore

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("web", "worker", "beat")
_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?P<op>:-|:\?)(?P<arg>.*)\}$")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, Any]:
    return _compose()["services"]


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def _default(value: str) -> str:
    """The value ``${NAME:-default}`` takes when NAME is unset."""
    match = _VARIABLE.match(value)
    assert match and match["op"] == ":-", f"{value!r} is not ${{NAME:-default}}"
    return match["arg"]


def test_the_five_services_are_there() -> None:
    services = _services()
    assert {"postgres", "redis", "web", "worker", "beat"} <= services.keys()
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in APP_SERVICES:
        assert services[name]["build"] == ".", f"{name} is built from the Dockerfile"


@pytest.mark.parametrize("name", ["postgres", "redis", "web"])
def test_healthchecks(name: str) -> None:
    check = _services()[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert len(check["test"]) > 1
    assert check["retries"] >= 1


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("web", {"postgres", "redis"}),
        ("worker", {"postgres", "redis", "web"}),
        ("beat", {"postgres", "redis", "web"}),
    ],
)
def test_services_wait_for_healthy_dependencies(name: str, needs: set[str]) -> None:
    services = _services()
    depends_on = services[name]["depends_on"]
    assert set(depends_on) == needs
    for dependency, rule in depends_on.items():
        assert rule == {"condition": "service_healthy"}, f"{name} -> {dependency}"
        assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"


def test_web_migrates_collects_static_then_runs_daphne() -> None:
    command = _command(_services()["web"])
    migrate = command.index("manage.py migrate --noinput")
    collect = command.index("manage.py collectstatic --noinput")
    daphne = command.index("exec daphne -b 0.0.0.0 -p 8000 realtime.asgi:application")
    assert migrate < collect < daphne
    assert "&&" in command[:daphne], "daphne must not start when a step before it failed"
    assert _services()["web"]["ports"] == ["${WEB_PORT:-8000}:8000"]


def test_web_healthcheck_fetches_a_file_that_exists() -> None:
    probe = " ".join(_services()["web"]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:8000/static/(\S+?)'", probe)
    assert match, probe
    # Served from an app's static folder (collectstatic gathers them all); taskstore's wherever
    # it is imported from (the version matrix installs it).
    folders = [ROOT / "realtime" / "static", Path(taskstore.__file__).parent / "static"]
    assert any((folder / match[1]).is_file() for folder in folders)


@pytest.mark.parametrize(
    ("name", "entry"),
    [("worker", "celery -A realtime worker"), ("beat", "celery -A realtime beat")],
)
def test_celery_processes_use_the_production_entry_points(name: str, entry: str) -> None:
    assert _command(_services()[name]).startswith(entry)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_defaults(name: str) -> None:
    env = _services()[name]["environment"]
    assert env["DJANGO_SECRET_KEY"] == "${DJANGO_SECRET_KEY:?set DJANGO_SECRET_KEY}"
    assert _default(env["DJANGO_DEBUG"]) == "0"
    assert _default(env["DJANGO_ALLOWED_HOSTS"])

    database = dj_database_url.parse(_default(env["DATABASE_URL"]))
    postgres = _services()["postgres"]["environment"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["HOST"] == "postgres"
    assert database["NAME"] == postgres["POSTGRES_DB"]
    assert database["USER"] == postgres["POSTGRES_USER"]
    assert database["PASSWORD"] == _default(postgres["POSTGRES_PASSWORD"])
    assert _default(env["REDIS_URL"]).startswith("redis://redis:6379/")


def test_dockerfile_installs_the_lock_and_runs_unprivileged() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "COPY requirements.lock ./" in instructions
    assert any(re.fullmatch(r"RUN pip install (.* )?-r requirements\.lock", i) for i in instructions)
    assert (ROOT / "requirements.lock").is_file()
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    install = next(i for i in instructions if "-r requirements.lock" in i)
    copy_all = next(i for i in instructions if re.match(r"COPY (--\S+ )*\. \.$", i))
    assert instructions.index(install) < instructions.index(copy_all), "dependencies before code"


def test_dockerignore_keeps_the_environment_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file() -> None:
    cli = _docker_compose()
    if cli is None:
        pytest.skip("no docker compose CLI here: the structure is checked by the tests above")
    unset = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    command = [*cli, "-f", str(COMPOSE), "config", "--quiet"]
    ok = subprocess.run(command, env={**unset, "DJANGO_SECRET_KEY": "x" * 50}, capture_output=True)
    assert ok.returncode == 0, ok.stderr.decode()
    missing = subprocess.run(command, env=unset, capture_output=True)
    assert missing.returncode != 0
    assert b"set DJANGO_SECRET_KEY" in missing.stderr
