"""Starting and stopping the real processes integration tests talk to."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def child_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment for a service process on the test database and Redis."""
    from tests import services

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "TASKSTORE_", "PYTEST", "REDIS_URL", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="realtime.settings",
        DJANGO_SECRET_KEY=services.SECRET_KEY,
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DATABASE_URL=database_url,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


class ManagedProcess:
    """A child process whose output goes to a log file the test can read."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], Any] | str | None = None, timeout: float = 60) -> ManagedProcess:
        """Start it and wait until ``ready`` (a callable, or a regex seen in its output)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if ready is not None:
            check = (lambda: re.search(ready, self.output())) if isinstance(ready, str) else ready

            def up() -> Any:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
                return check()

            try:
                wait_for(up, timeout, f"{self.name} to be ready")
            except AssertionError:
                self.stop()
                raise AssertionError(f"{self.name} did not become ready:\n{self.output()[-4000:]}") from None
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop it (and its process group), killing it if it will not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def celery_worker(env: dict[str, str], concurrency: int = 2, *extra: str) -> ManagedProcess:
    """A real ``celery -A realtime worker`` (prefork) process."""
    args = [
        str(VENV_BIN / "celery"), "-A", "realtime", "worker", "--pool=prefork",
        f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle", "--without-gossip",
        "--prefetch-multiplier=1", "--include=tests.support.worker_tasks", *extra,
    ]  # fmt: skip
    return ManagedProcess("celery-worker", args, env).start(ready=r"celery@\S+ ready\.")


def daphne(env: dict[str, str], port: int | None = None) -> tuple[ManagedProcess, int]:
    """A real daphne process serving ``realtime.asgi:application``; returns it and its port."""
    port = port or free_port()
    args = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "realtime.asgi:application"]
    proc = ManagedProcess(f"daphne-{port}", args, env).start(ready=lambda: port_open(port))
    return proc, port


def uvicorn(env: dict[str, str], port: int | None = None) -> tuple[ManagedProcess, int]:
    """A real uvicorn process serving ``realtime.asgi:application`` with uvicorn's defaults (it
    works out the ASGI version itself); returns it and its port."""
    port = port or free_port()
    args = [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "realtime.asgi:application"]  # fmt: skip
    proc = ManagedProcess(f"uvicorn-{port}", args, env).start(ready=lambda: port_open(port))
    return proc, port
