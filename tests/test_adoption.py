"""taskstore as a new user adopts it: the wheel, a fresh venv, ``django-admin startproject``, and
the steps of docs/install.md taken from the doc itself, run against real PostgreSQL, Redis,
daphne and a prefork Celery worker of that new project."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import websockets

from tests import services
from tests.support.processes import ROOT, ManagedProcess, free_port, port_open

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

INSTALL_DOC = ROOT / "docs" / "install.md"
# What the new project needs besides the wheel, per docs/install.md ("Install"), pinned by the
# project's own lock file.
PROJECT_PACKAGES = ["daphne", "whitenoise", "psycopg[binary]"]
MARKER = re.compile(r"<!-- install: (append|create) (\S+) -->\n```python\n(.*?)```", re.S)
COMMANDS = re.compile(r"<!-- install: run -->\n```console\n(.*?)```", re.S)


@dataclass
class Project:
    """The adopting project: its folder, its venv's python and the environment it runs in."""

    path: Path
    python: Path
    env: dict[str, str]

    def manage(self, *args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py`` of the project in its venv."""
        done = subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.path,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def shell(self, code: str) -> str:
        """Run Python in ``manage.py shell`` and return the last line it printed (Django 5.2 and
        later print what the shell imported first)."""
        return self.manage("shell", "-c", code).stdout.strip().splitlines()[-1]

    def process(self, name: str, *args: str) -> ManagedProcess:
        """A long-running process of the project (daphne, a worker), not yet started."""
        return ManagedProcess(name, [str(self.python.parent / args[0]), *args[1:]], self.env, cwd=self.path)


def clean_env() -> dict[str, str]:
    """This process's environment without what configures the test suite's own Django."""
    prefixes = ("DJANGO_", "PYTEST", "CELERY_", "TASKSTORE_", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def run(*args: str | Path, cwd: Path = ROOT, timeout: float = 600) -> str:
    """Run a command in a clean environment; fail with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def install_steps() -> list[tuple[str, str, str]]:
    """The ``(how, path, code)`` snippets of docs/install.md, in the doc's order."""
    steps = [(how, path, code) for how, path, code in MARKER.findall(INSTALL_DOC.read_text())]
    assert steps, "docs/install.md has no snippets marked for the adoption test"
    return steps


def install_commands() -> list[list[str]]:
    """The ``manage.py`` commands of docs/install.md's "Migrate and run" step."""
    block = COMMANDS.search(INSTALL_DOC.read_text())
    assert block is not None
    return [line.split()[2:] for line in block.group(1).splitlines() if line.startswith("python manage.py")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution, built from the working tree as a release would be."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", out, ROOT)
    (built,) = out.glob("*.whl")
    assert list(out.glob("*.tar.gz")), "the sdist did not build"
    return built


def test_the_wheel_holds_one_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"taskstore"}
    for needed in (
        "taskstore/py.typed",
        "taskstore/migrations/0001_initial.py",
        "taskstore/static/taskstore/taskclient.js",
        "taskstore/static/taskstore/admin-live.js",
        "taskstore/templates/admin/taskstore/taskrecord/change_list.html",
        "taskstore/management/commands/taskstore_cleanup.py",
        "taskstore/consumers/tasks.py",
        "taskstore/routing.py",
    ):
        assert needed in names, needed
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Python: >=3.10" in metadata
    requirements = re.findall(r"^Requires-Dist: (\S+)", metadata, re.M)
    assert {r.split(">")[0].split("<")[0].split(";")[0].lower() for r in requirements} >= {
        "django",
        "channels",
        "celery",
        "channels-redis",
    }
    for project_only in ("daphne", "whitenoise", "dj-database-url", "psycopg"):
        assert not any(r.lower().startswith(project_only) for r in requirements), project_only


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of its own for the new project, dropped afterwards."""
    name = f"adoption_{uuid.uuid4().hex[:10]}"
    admin_url = services.DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield services.DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def project(wheel: Path, database: str, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A fresh venv with the wheel installed, a fresh ``startproject``, and docs/install.md applied."""
    base = tmp_path_factory.mktemp("adopter")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", ROOT / "requirements.lock", f"{wheel}[redis]", *PROJECT_PACKAGES,
    )  # fmt: skip
    path = base / "src"
    path.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", path, cwd=base)
    run(python, "manage.py", "startapp", "myapp", cwd=path)
    for how, relative, code in install_steps():
        target = path / relative
        if how == "create":
            target.write_text(code)
        else:
            target.write_text(target.read_text() + "\n" + code)
    # What the doc leaves to the project: where its database is. And a queue of its own, so the
    # suite's own worker on the same Redis never takes this project's tasks.
    settings = path / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
        + f"'NAME': {database.rsplit('/', 1)[1]!r}, 'USER': 'postgres', 'HOST': '127.0.0.1', 'PORT': 5432}}}}\n"
        # A queue of its own: the suite's worker (another project on the same Redis) consumes
        # the default one and would take this project's tasks, unknown to it.
        + f"CELERY_TASK_DEFAULT_QUEUE = 'adoption-{database.rsplit('_', 1)[1]}'\n"
    )
    env = clean_env()
    env.update(
        DJANGO_SETTINGS_MODULE="mysite.settings",
        REDIS_URL=services.REDIS_URL,
        PYTHONPATH=str(path),
        PYTHONUNBUFFERED="1",
        VIRTUAL_ENV=str(venv),
    )
    made = Project(path, python, env)
    # taskstore must come from the wheel, never from this repository.
    located = made.shell("import taskstore; print(taskstore.__file__)")
    assert located.startswith(str(venv)), located
    return made


def test_the_documented_steps_leave_a_project_that_checks_clean(project: Project) -> None:
    for command in install_commands():
        done = project.manage(*command)
        if command[0] == "check":
            assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


def test_without_channel_layers_the_check_names_the_setting(project: Project) -> None:
    (project.path / "mysite" / "settings_nolayer.py").write_text(
        "from .settings import *\n\ndel CHANNEL_LAYERS\n"
    )
    done = project.manage("check", check=False, DJANGO_SETTINGS_MODULE="mysite.settings_nolayer")
    assert done.returncode != 0
    assert "taskstore.E004" in done.stderr and "CHANNEL_LAYERS" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def served(project: Project) -> Iterator[int]:
    """daphne and a prefork worker of the new project, on its migrated database."""
    for command in install_commands():
        project.manage(*command)
    port = free_port()
    web = project.process("daphne", "daphne", "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application")
    worker = project.process(
        "worker", "celery", "-A", "mysite", "worker", "--pool=prefork", "--concurrency=1",
        "--loglevel=INFO", "--without-mingle", "--without-gossip",
    )  # fmt: skip
    web.start(ready=lambda: port_open(port))
    try:
        worker.start(ready=r"celery@\S+ ready\.")
        try:
            yield port
        finally:
            worker.stop()
    finally:
        web.stop()


async def follow(port: int, task_id: str, token: str, send: Any) -> list[dict[str, Any]]:
    """Subscribe before the task exists, send it, and collect every frame up to SUCCESS."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/tasks/", open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "task_id": task_id, "token": token}))
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await asyncio.get_running_loop().run_in_executor(None, send)
        while frames[-1].get("state") != "SUCCESS":
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    return frames


def test_a_task_of_the_new_project_is_pushed_version_by_version(project: Project, served: int) -> None:
    task_id = str(uuid.uuid4())
    token = project.shell(f"import taskstore; print(taskstore.make_token({task_id!r}))")

    def send() -> None:
        project.shell(
            f"from myapp.tasks import resize; resize.apply_async(kwargs={{'image_id': 7}}, task_id={task_id!r})"
        )

    frames = asyncio.run(follow(served, task_id, token, send))
    assert all(f["type"] == "task.update" and f["task_id"] == task_id for f in frames), frames
    assert [f["version"] for f in frames] == list(range(len(frames)))
    assert [f["state"] for f in frames] == [
        "PENDING", "PENDING", "RECEIVED", "STARTED", "PROGRESS", "PROGRESS", "PROGRESS", "SUCCESS",
    ]  # fmt: skip
    assert [f["progress"] for f in frames[4:7]] == [{"current": n, "total": 3} for n in (1, 2, 3)]
    assert frames[-1]["result"] == {"image": 7, "sizes": [64, 128, 256]}

    # REST, with the same token.
    query = urllib.parse.urlencode({"token": token})
    with urllib.request.urlopen(
        f"http://127.0.0.1:{served}/api/tasks/{task_id}/?{query}", timeout=10
    ) as answer:
        document = json.load(answer)
    assert (document["state"], document["version"]) == ("SUCCESS", len(frames) - 1)
    # Celery's own API reads the same row.
    assert project.shell(
        f"from celery.result import AsyncResult; print(AsyncResult({task_id!r}).get(timeout=10))"
    ) == str({"image": 7, "sizes": [64, 128, 256]})


def test_the_admin_live_list_loads_its_script(project: Project, served: int) -> None:
    project.shell(
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='ops').exists() or "
        "User.objects.create_superuser('ops', 'ops@example.com', 'a-long-password-1')"
    )
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{served}"
    opener.open(f"{base}/admin/login/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode(
        {
            "username": "ops",
            "password": "a-long-password-1",
            "csrfmiddlewaretoken": csrf,
            "next": "/admin/taskstore/taskrecord/",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/admin/login/", data=form, headers={"Referer": f"{base}/admin/login/"}
    )
    page = opener.open(request, timeout=10).read().decode()
    assert 'src="/static/taskstore/admin-live.js"' in page, page[:2000]
    assert '"feed_url": "/ws/feed/"' in page
    for script in ("admin-live.js", "taskclient.js"):
        with opener.open(f"{base}/static/taskstore/{script}", timeout=10) as answer:
            assert answer.status == 200
            assert "javascript" in answer.headers["Content-Type"]
