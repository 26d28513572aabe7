"""CPU time by kind of process, read from Linux's /proc: where a benchmark's time goes.

A sample is the CPU seconds (user + system) each kind of process has used so far: the worker's
main process, its pool children, PostgreSQL and Redis, and the whole machine. The difference of
two samples over a stretch of work, divided by the tasks done in it, is CPU per task.

PostgreSQL starts a backend per connection, and Celery's Django fixup closes connections around
tasks, so backends come and go during a run. Its figure is the postmaster's own time, plus its
reaped children's (``cutime``/``cstime``: a backend's whole life, once it has exited), plus the
children still alive. Across a stretch, a backend that exits within it moves from "alive" to
"reaped" with its whole time, so the difference counts it once. It includes every database of
the server, as the machine's figure includes everything on it: run benchmarks on a quiet machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
KINDS = ("worker main", "pool children", "PostgreSQL", "Redis", "whole machine")


def available() -> bool:
    """Whether this system has the /proc this module reads (Linux)."""
    return (PROC / "stat").is_file() and (PROC / "self" / "stat").is_file()


@dataclass(frozen=True)
class _Stat:
    ppid: int
    own: float  # seconds, user + system, all threads
    reaped: float  # seconds of children it has waited for


def _stat(pid: int) -> _Stat | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may hold spaces: the fields follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return _Stat(ppid, (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def _all() -> dict[int, _Stat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def _machine_busy() -> float:
    """Seconds all CPUs have spent on anything but idle and I/O wait, since boot."""
    first = (PROC / "stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


def sample(worker_pid: int, postmaster_pid: int, redis_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each kind of process (see the module's docstring)."""
    stats = _all()

    def own(pid: int) -> float:
        stat = stats.get(pid)
        return stat.own if stat else 0.0

    def children(pid: int) -> float:
        return sum(s.own for s in stats.values() if s.ppid == pid)

    postmaster = stats.get(postmaster_pid)
    return {
        "worker main": own(worker_pid),
        "pool children": children(worker_pid),
        "PostgreSQL": (postmaster.own + postmaster.reaped if postmaster else 0.0) + children(postmaster_pid),
        "Redis": own(redis_pid),
        "whole machine": _machine_busy(),
    }


def per_task_ms(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """Milliseconds of CPU per task of each kind between two samples."""
    return {kind: (after[kind] - before[kind]) / tasks * 1000 for kind in KINDS}


def postmaster_of(backend_pid: int) -> int:
    """The postmaster's pid, from one backend's (``SELECT pg_backend_pid()``) parent."""
    stat = _stat(backend_pid)
    if stat is None:
        raise RuntimeError(f"no process {backend_pid}: is PostgreSQL on this machine?")
    return stat.ppid


def this_process_by_thread() -> dict[str, float] | None:
    """CPU seconds this process has used so far: its main thread, and all its other threads (in a
    producer: the publisher's sending thread). None where /proc is not there."""
    if not available():
        return None
    main, others = 0.0, 0.0
    for entry in (PROC / "self" / "task").iterdir():
        stat = _stat_file(entry / "stat")
        if stat is None:
            continue
        if entry.name == str(os.getpid()):
            main += stat
        else:
            others += stat
    return {"main thread": main, "other threads": others}


def _stat_file(path: Path) -> float | None:
    try:
        text = path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # a thread that ended between the listing and the read
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
