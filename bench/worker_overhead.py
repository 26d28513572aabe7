"""Worker overhead: no-op tasks per second through a real prefork Celery worker.

    .venv/bin/python bench/worker_overhead.py [--tasks N] [--rounds R] [--configs a,b,c,...]

Compares, in one run, with the configurations interleaved over several rounds:

  (a)  plain Celery, results ignored, taskstore not installed      (bench/settings_plain.py)
  (b)  django-celery-results' ``django-db`` backend                   (bench/settings_dcr.py)
  (c)  this project's default settings: PENDING, RECEIVED, STARTED and SUCCESS recorded
       through the ORM and each pushed to the Redis channel layer  (bench/settings_taskstore.py)

and on request (``--configs``):

  (c0)      as (c), with a channel layer that discards every message (bench/settings_discard.py);
            not a channels-redis layer, so every batch goes to the publisher's sending thread
            (what another layer costs), where (c) sends from the calling thread
  (c-nopush) as (c), with nothing handed to the publisher at all (bench/settings_nopush.py): what
            recording costs without the push
  (b-reuse) (b) and (c-reuse) (c), with ``CELERY_DB_REUSE_MAX`` so Celery's Django fixup keeps
            database connections across tasks instead of closing them around each one
  (d)       (a) plus one durable row write per task in the producer and one in the pool child
            (bench/durable_floor.py): the least a store that records publication and end durably
            can cost, so (d) / (a) is the ceiling of (c) / (a) on the machine

Each run flushes a Redis database of its own (the broker and the channel layer), empties the
result tables, publishes N ``realtime.tasks.add`` messages from a producer process (timed: the
producer-side PENDING recording is part of (c)'s cost), then starts ``celery -A realtime worker``
(prefork, concurrency 2) on the full queue. A ``task_postrun`` receiver installed in every
configuration (bench/counter.py) counts completions into Redis and stamps the first and the last;
the worker rate is (N - 1) / (last - first), so worker start-up is not measured. After each run
the bench checks that (b) stored N results and (c) recorded N tasks with 4 events each, and reads
PostgreSQL's counters for the connections and transactions the run cost. On Linux, with
PostgreSQL and Redis on the same machine, it also reads each process's CPU time from /proc at the
first completion and at the last (bench/cpu.py) and prints CPU per task by kind of process: the
worker's main process, its pool children, PostgreSQL, Redis and the whole machine. With (c)
selected it also times publishing alone: one recorded transition's ``group_send`` calls to Redis.

Needs PostgreSQL (creates and drops a database of its own) and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cpu, durable_floor  # noqa: E402
from bench.counter import BEGAN_KEY, DONE_KEY, FINISHED_KEY, FIRST_KEY, LAST_KEY  # noqa: E402
from bench.scratch import create_database, drop_database  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
# BENCH_DATABASE in the environment names another (several benches may share one server).
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "taskstore_bench_worker")
SECRET_KEY = "bench-worker-overhead-not-a-secret-0123456789abcdef"
QUEUE = "celery"
STALL_SECONDS = 60.0
RESULT_TABLES = (
    "taskstore_taskevent",
    "taskstore_taskrecord",
    "taskstore_grouprecord",
    "django_celery_results_taskresult",
    "django_celery_results_groupresult",
    "django_celery_results_chordcounter",
    durable_floor.TABLE,
)


@dataclass(frozen=True)
class Config:
    """One configuration under test."""

    key: str
    label: str
    settings: str


CONFIGS = (
    Config("a", "plain Celery, results ignored", "bench.settings_plain"),
    Config("b", "django-celery-results (django-db)", "bench.settings_dcr"),
    Config("c", "taskstore: 4 states recorded + pushed", "bench.settings_taskstore"),
    Config("c0", "taskstore, channel layer discards", "bench.settings_discard"),
    Config("c-nopush", "taskstore, nothing pushed", "bench.settings_nopush"),
    Config("b-reuse", "(b) + CELERY_DB_REUSE_MAX=1000", "bench.settings_dcr_reuse"),
    Config("c-reuse", "(c) + CELERY_DB_REUSE_MAX=1000", "bench.settings_taskstore_reuse"),
    Config("d", "(a) + one durable row write per state", "bench.settings_floor"),
)
DEFAULT_CONFIGS = ("a", "b", "c")


@dataclass(frozen=True)
class Run:
    """What one run of one configuration measured."""

    publish_rate: float  # tasks per second sent by the producer (PENDING recorded, for c)
    worker_rate: float  # tasks per second done by the worker
    producer_xacts: float  # database transactions per task, producer side
    worker_sessions: float  # database connections opened per task, worker side
    worker_xacts: float  # database transactions per task, worker side
    cpu_ms: dict[str, float] | None  # CPU ms per task by kind of process (bench/cpu.py), on Linux
    producer_cpu_us: tuple[float, float] | None  # CPU µs per task: producer's main, other threads


@dataclass
class Figures:
    """The runs of one configuration, one per round."""

    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        """The median over the rounds of the Run field ``name``."""
        return statistics.median(getattr(run, name) for run in self.runs)

    def producer_cpu(self) -> str:
        """The producer's CPU µs per task, main thread + other threads (medians), or "-"."""
        measured = [run.producer_cpu_us for run in self.runs if run.producer_cpu_us]
        if not measured:
            return "-"
        main = statistics.median(m[0] for m in measured)
        others = statistics.median(m[1] for m in measured)
        return f"{main:,.0f} + {others:,.0f}"

    def cpu_ranges(self) -> dict[str, tuple[float, float]] | None:
        """The lowest and highest CPU ms per task of each kind over the rounds, if measured."""
        measured = [run.cpu_ms for run in self.runs if run.cpu_ms]
        if not measured:
            return None
        return {kind: (min(m[kind] for m in measured), max(m[kind] for m in measured)) for kind in cpu.KINDS}


class BenchError(RuntimeError):
    """A run did not do what it should have; its figures would mislead."""


# --- child roles (run in subprocesses under a bench settings module) --------------------------


def produce(count: int) -> dict[str, float]:
    """Publish ``count`` add tasks from this process; return how long it took, in seconds.

    With taskstore installed this includes recording PENDING for each and draining the
    publisher, as an application sending tasks would pay for.
    """
    import django

    django.setup()
    from django.apps import apps

    from realtime.tasks import add

    threads_before = cpu.this_process_by_thread()
    started = time.perf_counter()
    for i in range(count):
        add.delay(i, i)
    if apps.is_installed("taskstore"):
        from taskstore.publisher import publisher

        if not publisher.flush(timeout=60):
            raise BenchError("the producer's channel-layer messages were not all sent")
    figures = {"seconds": time.perf_counter() - started}
    threads_after = cpu.this_process_by_thread()
    if threads_before and threads_after:
        for thread, seconds in threads_after.items():
            figures[f"{thread} µs"] = (seconds - threads_before[thread]) / count * 1e6
    return figures


def probe_publish(count: int) -> dict[str, float]:
    """Time what publishing one recorded transition costs, against the configured layer.

    A transition of an ownerless task is two messages (the task's group and the staff feed), as
    the recorder builds them. Measured two ways: one ``group_send`` at a time on one loop
    (latency), and through the process's publisher the way the recorder hands them over (with
    the core layer and nobody subscribed, the publisher reads the groups' members, finds none
    and sends nothing: taskstore/core_groups.py).
    """
    import asyncio

    import django

    django.setup()
    from channels.layers import get_channel_layer

    from taskstore import addressing
    from taskstore.publisher import publisher

    def message(i: int) -> dict[str, Any]:
        document = {
            "task_id": f"probe-{i:08d}-0000-0000-0000-000000000000",
            "task_name": "realtime.tasks.add",
            "state": "SUCCESS",
            "version": 4,
            "retries": 0,
            "result": 2 * i,
            "result_truncated": False,
            "progress": None,
            "error": None,
            "group_id": None,
            "parent_id": None,
            "worker": "celery@bench",
            "date_created": "2026-11-23T12:00:00.000000Z",
            "date_started": "2026-11-23T12:00:00.001000Z",
            "date_done": "2026-11-23T12:00:00.002000Z",
            "owner_id": None,
            "traceback": None,
            "args": [i, i],
            "kwargs": {},
        }
        return {"type": addressing.MESSAGE_TASK, "document": document}

    batches = [
        [(addressing.task_group(m["document"]["task_id"]), m), (addressing.FEED_STAFF, m)]
        for m in (message(i) for i in range(count))
    ]

    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        publisher.publish(batch)
    if not publisher.flush(timeout=120):
        raise BenchError("the publisher did not drain")
    publisher_wall = time.perf_counter() - wall
    publisher_cpu = time.process_time() - cpu

    async def one_at_a_time() -> float:
        layer = get_channel_layer()
        started = time.perf_counter()
        for batch in batches:
            for group, msg in batch:
                await layer.group_send(group, msg)
        return time.perf_counter() - started

    sequential = asyncio.run(one_at_a_time())
    return {
        "events": count,
        "sends_per_event": 2,
        "sequential_us_per_send": sequential / (2 * count) * 1e6,
        "publisher_wall_us_per_event": publisher_wall / count * 1e6,
        "publisher_cpu_us_per_event": publisher_cpu / count * 1e6,
    }


# --- the orchestrating process -------------------------------------------------------------------


def child_env(settings: str, database_url: str, redis_url: str, tasks: int) -> dict[str, str]:
    """The environment of a producer or worker process for one configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "TASKSTORE_", "BENCH_", "REDIS_URL", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        BENCH_COUNTER_URL=redis_url,
        BENCH_TASKS=str(tasks),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def run_role(args: list[str], env: dict[str, str], script: Path | None = None) -> dict[str, Any]:
    """Run this script (or ``script``) in a child role; return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, str(script or Path(__file__).resolve()), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def migrate(database_url: str, redis_url: str) -> None:
    """Create the tables of both result stores and of the durable floor in the bench database."""
    import psycopg

    for settings in ("bench.settings_taskstore", "bench.settings_dcr"):
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=child_env(settings, database_url, redis_url, 0),
            check=True,
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(durable_floor.CREATE)


def empty_tables(database_url: str) -> None:
    """Empty the result tables so every run starts from the same state."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(RESULT_TABLES)}")


def count_rows(database_url: str, sql: str) -> int:
    """Return the single number ``sql`` selects."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def db_activity(database_url: str) -> tuple[int, int]:
    """Connections opened and transactions ended in the bench database so far.

    PostgreSQL flushes a session's counts at the latest when it ends, and every process that
    used the database has ended when this is called.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def verify(config: Config, database_url: str, tasks: int) -> None:
    """Check that the run stored what its configuration promises."""
    if config.key.startswith("b"):
        stored = count_rows(
            database_url, "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS'"
        )
        if stored != tasks:
            raise BenchError(f"({config.key}) stored {stored} results, expected {tasks}")
    elif config.key.startswith("c"):
        done = count_rows(database_url, "SELECT count(*) FROM taskstore_taskrecord WHERE state = 'SUCCESS'")
        events = count_rows(database_url, "SELECT count(*) FROM taskstore_taskevent")
        if done != tasks or events != 4 * tasks:
            raise BenchError(
                f"({config.key}) recorded {done} successes and {events} events, "
                f"expected {tasks} and {4 * tasks}"
            )
    elif config.key == "d":
        ended = count_rows(
            database_url, f"SELECT count(*) FROM {durable_floor.TABLE} WHERE state = 'SUCCESS'"
        )
        if ended != tasks:
            raise BenchError(f"(d) wrote {ended} ends, expected {tasks}")


def start_worker(env: dict[str, str], concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``celery -A realtime worker`` (prefork) in a process group of its own."""
    args = [
        str(VENV_BIN / "celery"), "-A", "realtime", "worker", "--pool=prefork",
        f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-mingle",
        "--without-gossip", "--without-heartbeat", "-n", "bench@%h",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm-shut the worker down (its children flush the publisher), killing it if it hangs."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


def run_once(
    config: Config, tasks: int, concurrency: int, database_url: str, redis_url: str, timeout: float
) -> Run:
    """One run of one configuration."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    empty_tables(database_url)
    env = child_env(config.settings, database_url, redis_url, tasks)

    before_produce = db_activity(database_url)
    published = run_role(["--role=produce", f"--tasks={tasks}"], env)
    before_worker = db_activity(database_url)
    queued = client.llen(QUEUE)
    if queued != tasks:
        raise BenchError(f"({config.key}) {queued} messages in the queue, expected {tasks}")

    handle, name = tempfile.mkstemp(prefix=f"bench-worker-{config.key}-", suffix=".log")
    os.close(handle)
    log_path = Path(name)
    pids = _sampled_pids(client, database_url)
    proc = start_worker(env, concurrency, log_path)
    try:
        deadline = time.monotonic() + timeout
        # CPU is sampled from the first completion to the last, so start-up is not counted.
        _wait_for(client, BEGAN_KEY, proc, config, tasks, deadline, log_path)
        began = (cpu.sample(proc.pid, *pids), int(client.get(DONE_KEY) or 0)) if pids else None
        _wait_for(client, FINISHED_KEY, proc, config, tasks, deadline, log_path)
        ended = cpu.sample(proc.pid, *pids) if pids else None
        first, last = float(client.get(FIRST_KEY) or 0), float(client.get(LAST_KEY) or 0)
    finally:
        stop_worker(proc)
    after_worker = db_activity(database_url)
    verify(config, database_url, tasks)
    log_path.unlink(missing_ok=True)
    return Run(
        publish_rate=tasks / published["seconds"],
        worker_rate=(tasks - 1) / (last - first),
        producer_xacts=(before_worker[1] - before_produce[1]) / tasks,
        worker_sessions=(after_worker[0] - before_worker[0]) / tasks,
        worker_xacts=(after_worker[1] - before_worker[1]) / tasks,
        cpu_ms=cpu.per_task_ms(began[0], ended, tasks - began[1]) if began and ended else None,
        producer_cpu_us=(
            (published["main thread µs"], published["other threads µs"])
            if "main thread µs" in published
            else None
        ),
    )


def _sampled_pids(client: Any, database_url: str) -> tuple[int, int] | None:
    """The postmaster's and the Redis server's pids, when both run here and /proc can be read."""
    import psycopg

    if not cpu.available():
        return None
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        postmaster = cpu.postmaster_of(int(row[0])) if row else 0
    except RuntimeError:
        return None  # a PostgreSQL on another machine
    redis_pid = int(client.info("server").get("process_id", 0))
    if not postmaster or not redis_pid or not Path(f"/proc/{redis_pid}").exists():
        return None
    return postmaster, redis_pid


def _wait_for(
    client: Any,
    key: str,
    proc: subprocess.Popen[bytes],
    config: Config,
    tasks: int,
    deadline: float,
    log_path: Path,
) -> None:
    """Block until the counter pushes to ``key``; fail fast when nothing finishes for a while (a
    misconfigured worker), not at the end of the whole timeout."""
    progress, progressed_at = -1, time.monotonic()
    while client.blpop([key], timeout=1) is None:
        if proc.poll() is not None:
            raise BenchError(f"({config.key}) the worker exited:\n{log_path.read_text()[-4000:]}")
        done = int(client.get(DONE_KEY) or 0)
        now = time.monotonic()
        if done != progress:
            progress, progressed_at = done, now
        if now > deadline or now - progressed_at > STALL_SECONDS:
            raise BenchError(
                f"({config.key}) {done}/{tasks} tasks done, none for {now - progressed_at:.0f}s:\n"
                f"{log_path.read_text()[-4000:]}"
            )


def render(
    figures: dict[str, Figures], probe: dict[str, float] | None, tasks: int, rounds: int, concurrency: int
) -> str:
    """The result table, the ratios and the publishing cost, as Markdown."""
    worker = {key: f.median("worker_rate") for key, f in figures.items()}
    lines = [
        f"{tasks} tasks per run, {rounds} round(s) with the configurations interleaved, worker prefork "
        f"concurrency {concurrency}; medians over the rounds.",
        "",
        "| configuration | publish, tasks/s | worker, tasks/s | worker, each round "
        "| DB connections / task (worker) | DB transactions / task (producer + worker) "
        "| producer CPU µs / task (main thread + others) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for config in CONFIGS:
        if config.key not in figures:
            continue
        f = figures[config.key]
        rounds_text = " / ".join(f"{run.worker_rate:,.0f}" for run in f.runs)
        lines.append(
            f"| ({config.key}) {config.label} | {f.median('publish_rate'):,.0f} | {worker[config.key]:,.0f} "
            f"| {rounds_text} | {f.median('worker_sessions'):.2f} "
            f"| {f.median('producer_xacts'):.2f} + {f.median('worker_xacts'):.2f} "
            f"| {f.producer_cpu()} |"
        )
    lines.extend(_cpu_table(figures))
    lines.append("")
    if {"a", "b", "c"} <= worker.keys():
        ca = worker["c"] / worker["a"]
        cb = worker["c"] / worker["b"]
        publish = {key: figures[key].median("publish_rate") for key in ("a", "b", "c")}
        lines.append(
            f"Worker ratios: c/a = {ca:.2f} (target ≥ 0.75: {'met' if ca >= 0.75 else 'not met'}), "
            f"c/b = {cb:.2f} (target ≥ 1.0: {'met' if cb >= 1.0 else 'not met'}). "
            f"Publish ratios: c/a = {publish['c'] / publish['a']:.2f}, c/b = {publish['c'] / publish['b']:.2f}."
        )
    if {"b-reuse", "c-reuse"} <= worker.keys():
        lines.append(
            f"With connections reused: c/b = {worker['c-reuse'] / worker['b-reuse']:.2f}"
            + (f", c/a = {worker['c-reuse'] / worker['a']:.2f}." if "a" in worker else ".")
        )
    if {"c", "c-nopush"} <= worker.keys():
        per_task = 1 / worker["c"] - 1 / worker["c-nopush"]
        lines.append(
            f"The push, worker throughput (c against c-nopush): {per_task * 1e6:,.0f} µs of worker time "
            f"per task"
            + (f"; without it c/a would be {worker['c-nopush'] / worker['a']:.2f}." if "a" in worker else ".")
        )
    if {"a", "d"} <= worker.keys():
        publish_d = figures["d"].median("publish_rate") / figures["a"].median("publish_rate")
        lines.append(
            f"The durable floor (d): one row write per state costs the worker "
            f"{(1 / worker['d'] - 1 / worker['a']) * 1e6:,.0f} µs and the producer "
            f"{(1 / figures['d'].median('publish_rate') - 1 / figures['a'].median('publish_rate')) * 1e6:,.0f} µs "
            f"per task: d/a = {worker['d'] / worker['a']:.2f} (worker), {publish_d:.2f} (publish), "
            f"the most any store writing durably where taskstore does could reach on this machine."
        )
    if probe:
        lines.append(
            f"Publishing, measured alone ({probe['events']:,.0f} transitions of 2 messages each, Redis "
            f"layer, no subscribers): {probe['publisher_wall_us_per_event']:,.0f} µs wall and "
            f"{probe['publisher_cpu_us_per_event']:,.0f} µs CPU per transition through the publisher; "
            f"{probe['sequential_us_per_send']:,.0f} µs per group_send awaited one at a time."
        )
    return "\n".join(lines)


def _cpu_table(figures: dict[str, Figures]) -> list[str]:
    """CPU ms per task by kind of process, lowest-highest over the rounds (bench/cpu.py)."""
    ranges = {config.key: figures[config.key].cpu_ranges() for config in CONFIGS if config.key in figures}
    if not any(ranges.values()):
        return []
    lines = [
        "",
        "CPU ms per task from the first completion to the last, lowest-highest over the rounds "
        "(PostgreSQL and the machine include anything else running on them):",
        "",
        "| configuration | " + " | ".join(cpu.KINDS) + " |",
        "|---|" + "---:|" * len(cpu.KINDS),
    ]
    for key, cells in ranges.items():
        if cells:
            shown = (
                f"{low:.2f}-{high:.2f}" if high - low >= 0.005 else f"{low:.2f}"
                for low, high in cells.values()
            )
            lines.append(f"| ({key}) | " + " | ".join(shown) + " |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per run (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (default 3)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size (default 2)")
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated configurations to run, from {', '.join(c.key for c in CONFIGS)} "
        f"(default {','.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help=f"server URL (default {DEFAULT_POSTGRES})"
    )
    parser.add_argument(
        "--redis", default=DEFAULT_REDIS, help=f"a Redis database to flush (default {DEFAULT_REDIS})"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take (default 600)")
    parser.add_argument("--role", choices=["produce", "probe-publish"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error("--tasks must be at least 2")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    known = {c.key for c in CONFIGS}
    args.configs = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = set(args.configs) - known
    if unknown:
        parser.error(
            f"unknown configuration(s) {', '.join(sorted(unknown))}: choose from {', '.join(sorted(known))}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    if args.role == "produce":
        print(json.dumps(produce(args.tasks)))
        return 0
    if args.role == "probe-publish":
        print(json.dumps(probe_publish(args.tasks)))
        return 0

    # A SIGTERM unwinds like Ctrl-C, so the worker is stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    configs = [c for c in CONFIGS if c.key in args.configs]
    database_url = create_database(args.postgres, BENCH_DATABASE)
    try:
        migrate(database_url, args.redis)
        figures = {c.key: Figures() for c in configs}
        for round_index in range(args.rounds):
            # Rotate the order each round so no configuration always runs first or last.
            shift = round_index % len(configs)
            for config in configs[shift:] + configs[:shift]:
                run = run_once(config, args.tasks, args.concurrency, database_url, args.redis, args.timeout)
                figures[config.key].runs.append(run)
                print(
                    f"round {round_index + 1}/{args.rounds} ({config.key}): "
                    f"publish {run.publish_rate:,.0f}/s, worker {run.worker_rate:,.0f}/s, "
                    f"{run.worker_sessions:.2f} connections and {run.worker_xacts:.2f} transactions per task",
                    file=sys.stderr,
                    flush=True,
                )
        probe = None
        if "c" in args.configs:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            env = child_env("bench.settings_taskstore", database_url, args.redis, args.tasks)
            probe = run_role(["--role=probe-publish", f"--tasks={args.tasks}"], env)
    finally:
        drop_database(args.postgres, BENCH_DATABASE)
    print(render(figures, probe, args.tasks, args.rounds, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
