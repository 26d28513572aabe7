"""What the operations tests share: fast heartbeats, workers on queues of their own."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from typing import Any

from taskstore.models import WorkerRecord
from tests.support.processes import VENV_BIN, ManagedProcess, wait_for

# Seconds: a heartbeat every 0.3, lost after 2 without one, a monitor round every 0.3.
HEARTBEAT = 0.3
LOST_AFTER = 2.0
MONITOR_INTERVAL = 0.3
FAST = {
    "TASKSTORE_WORKER_HEARTBEAT": str(HEARTBEAT),
    "TASKSTORE_WORKER_LOST_AFTER": str(LOST_AFTER),
    "TASKSTORE_MONITOR_INTERVAL": str(MONITOR_INTERVAL),
}
# The bound within which a killed worker must show as lost: its lease, one round of the monitor
# that holds the lease, and a heartbeat's worth of slack for when its last renewal happened.
# The suite's other processes (its session worker, other modules' servers) run the default
# monitor interval, and one of them may hold the lease: the bound takes the longer interval.
DEFAULT_MONITOR_INTERVAL = 5.0
LOST_BOUND = LOST_AFTER + max(MONITOR_INTERVAL, DEFAULT_MONITOR_INTERVAL) + HEARTBEAT + 1.0


def queue_name(label: str) -> str:
    """A queue of this test's own (no other worker of the suite consumes it)."""
    return f"ts11-{label}-{uuid.uuid4().hex[:8]}"


def fast_env(service_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The service environment with fast heartbeats."""
    return {**service_env, **FAST, **extra}


def start_worker(env: dict[str, str], name: str, queue: str, concurrency: int = 2) -> ManagedProcess:
    """A real prefork worker named ``name@…`` consuming ``queue`` only (the suite's usual
    arguments, tests.support.processes.celery_worker's)."""
    args = [
        str(VENV_BIN / "celery"), "-A", "realtime", "worker", "--pool=prefork",
        f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle", "--without-gossip",
        "--prefetch-multiplier=1", "--include=tests.support.worker_tasks", "-n", f"{name}@%h", "-Q", queue,
    ]  # fmt: skip
    return ManagedProcess(name, args, env).start(ready=rf"{name}@\S+ ready\.")


def hostname_of(name: str) -> str:
    """The full host name a worker started as ``name@%h`` reports."""
    return wait_for(
        lambda: (
            WorkerRecord.objects.filter(hostname__startswith=f"{name}@")
            .values_list("hostname", flat=True)
            .first()
        ),
        30,
        f"worker {name} to record itself",
    )


def worker_row(hostname: str) -> WorkerRecord:
    """The worker's row as it is now."""
    return WorkerRecord.objects.get(hostname=hostname)


def wait_worker(hostname: str, timeout: float, what: str, **expected: Any) -> WorkerRecord:
    """Wait until the worker's row has every ``expected`` value."""

    def check() -> WorkerRecord | None:
        row = WorkerRecord.objects.filter(hostname=hostname).first()
        if row is not None and all(getattr(row, k) == v for k, v in expected.items()):
            return row
        return None

    return wait_for(check, timeout, what)


def kill_main_process(proc: ManagedProcess) -> None:
    """SIGKILL the worker's main process only, as an OOM killer would; then clear its children."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(timeout=10)  # type: ignore[union-attr]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
