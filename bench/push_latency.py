"""Push latency: from a transition's commit to its frame reaching a subscribed WebSocket client.

    .venv/bin/python bench/push_latency.py [--tasks N] [--rate R]

One run measures, side by side on the same machine:

  floor   a bare Redis PUBLISH -> SUBSCRIBE round trip, at the same steady rate
  push    taskstore: ``record()`` commits a transition (PostgreSQL), the publisher sends it to the
          Redis channel layer, daphne's consumer pushes a ``task.update`` frame, and a client
          (the ``websockets`` library) reads it

Method. The bench starts a real daphne (``realtime.asgi:application``, the project's settings,
Redis channel layer, PostgreSQL). The client opens sockets and subscribes to N fresh task ids
(with tokens: each answers PENDING version 0) before anything is recorded. A separate recorder
process then records each task's PENDING, RECEIVED, STARTED and SUCCESS with the recorder itself
(the same write path a worker uses), spread evenly at R tasks a second (4R transitions a second).
It stamps each transition just before ``record()`` (before the write) and at its commit (when
the recorder's after-commit hook starts, before it hands the document to the publisher: where
no event loop runs, the publisher sends from the calling thread, so ``record()`` returns only
once the message is in Redis). The client stamps each frame as it is read. The stamps are
CLOCK_MONOTONIC, which all processes on one Linux machine share.

  commit -> frame   = frame read - the commit
  write  -> frame   = frame read - record() called (adds the upsert, the event row, the commit)

The floor uses the same shape: a publisher process PUBLISHes 4R stamped messages a second to
one Redis channel, the bench's process SUBSCRIBEs and stamps them as they arrive.

The celery-progress row is not measured: its browser client polls every 500 ms by default, so a
state change waits 250 ms on average (uniform over 0-500 ms) before the page even asks.

Needs PostgreSQL (creates and drops a database of its own) and Redis (flushes a database of its
own, 14 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clock import now, pace, stamp_commits  # noqa: E402
from bench.scratch import create_database, drop_database, free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
# BENCH_DATABASE in the environment names another (several benches may share one server).
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "taskstore_bench_push")
SECRET_KEY = "bench-push-latency-not-a-secret-0123456789abcdef"
STATES = ("PENDING", "RECEIVED", "STARTED", "SUCCESS")
FLOOR_CHANNEL = "bench.push-latency.floor"
# Subscriptions per socket: under TASKSTORE_MAX_SUBSCRIPTIONS (200).
PER_SOCKET = 150


# --- child roles -------------------------------------------------------------------------------


def role_recorder(ids_path: str, rate: float) -> None:
    """Record the 4 transitions of every task id in ``ids_path``, 4 x ``rate`` a second, evenly.

    Prints one JSON line per transition: task id, version, stamps before record() and at the
    commit.
    """
    import django

    django.setup()
    from taskstore.publisher import publisher
    from taskstore.recorder import Transition, record

    commits = stamp_commits()

    # Warm up first: the first publish of a process opens its Redis connections (and starts the
    # publisher's thread where it uses one), a one-off cost that is not the steady state measured.
    warm_up = f"bench-warm-up-{uuid4()}"
    record(Transition(task_id=warm_up, state="PENDING", task_name="bench.push"))
    publisher.flush(timeout=30)

    task_ids = json.loads(Path(ids_path).read_text())
    schedule = [(task_id, state) for task_id in task_ids for state in STATES]
    # Interleave tasks so each task's transitions are spread too: task i's state k is at tick
    # i*4 + k of a steady 4*rate a second clock.
    interval = 1.0 / (4 * rate)
    start = now() + 0.2
    out = []
    for index, (task_id, state) in enumerate(schedule):
        pace(start, index, interval)
        before = now()
        document = record(Transition(task_id=task_id, state=state, task_name="bench.push", result=index))
        if document is None:
            raise SystemExit(f"record() refused {state} of {task_id}")
        out.append(
            {"task_id": task_id, "version": document["version"], "before": before, "after": commits[-1]}
        )
    publisher.flush(timeout=30)
    sys.stdout.write("\n".join(json.dumps(line) for line in out) + "\n")


def role_floor_publisher(redis_url: str, count: int, rate: float) -> None:
    """PUBLISH ``count`` stamped messages, ``rate`` a second, evenly."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    connection.publish(FLOOR_CHANNEL, json.dumps({"i": -1, "sent": now()}))  # warm-up, not counted
    interval = 1.0 / rate
    start = now() + 0.2
    for index in range(count):
        pace(start, index, interval)
        connection.publish(FLOOR_CHANNEL, json.dumps({"i": index, "sent": now()}))


# --- the measuring side -------------------------------------------------------------------------


async def measure_floor(redis_url: str, count: int, rate: float, env: dict[str, str]) -> list[float]:
    """Round trips of a bare Redis PUBLISH -> SUBSCRIBE, in seconds."""
    import redis.asyncio as aioredis

    connection = aioredis.Redis.from_url(redis_url)
    pubsub = connection.pubsub()
    await pubsub.subscribe(FLOOR_CHANNEL)
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    publisher = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "floor",
            "--redis",
            redis_url,
            "--count",
            str(count),
            "--rate",
            str(rate),
        ],
        env=env,
    )
    samples = []
    try:
        while len(samples) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            if message is None:
                raise SystemExit("the floor publisher stopped sending")
            received = now()
            stamp = json.loads(message["data"])
            if stamp["i"] >= 0:
                samples.append(received - stamp["sent"])
    finally:
        publisher.wait(timeout=30)
        await pubsub.aclose()
        await connection.aclose()
    return samples


async def measure_push(
    port: int, tasks: int, rate: float, env: dict[str, str]
) -> tuple[list[float], list[float]]:
    """Commit -> frame and write -> frame latencies of every transition, in seconds."""
    from websockets.asyncio.client import connect

    from taskstore.tokens import make_token

    task_ids = [str(uuid4()) for _ in range(tasks)]
    received: dict[tuple[str, int], float] = {}
    done = asyncio.Event()
    expected = tasks * len(STATES)
    sockets = []
    try:
        for first in range(0, tasks, PER_SOCKET):
            ws = await connect(f"ws://127.0.0.1:{port}/ws/tasks/", proxy=None, max_size=2**22)
            sockets.append((ws, task_ids[first : first + PER_SOCKET]))

        async def subscribe(ws: Any, ids: list[str]) -> None:
            for i, task_id in enumerate(ids):
                await ws.send(
                    json.dumps({"type": "subscribe", "task_id": task_id, "token": make_token(task_id)})
                )
                if i >= 80:
                    await asyncio.sleep(1 / 45)  # stay under the rate limit (50/s after a burst of 100)
            for _ in ids:
                frame = json.loads(await ws.recv())
                if frame.get("version") != 0:
                    raise SystemExit(f"unexpected answer to subscribe: {frame}")

        await asyncio.gather(*(subscribe(ws, ids) for ws, ids in sockets))

        async def read(ws: Any) -> None:
            async for text in ws:
                stamp = now()
                frame = json.loads(text)
                if frame.get("type") == "task.update":
                    received.setdefault((frame["task_id"], frame["version"]), stamp)
                    if len(received) >= expected:
                        done.set()

        readers = [asyncio.create_task(read(ws)) for ws, _ in sockets]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as ids_file:
            json.dump(task_ids, ids_file)
        recorder = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "recorder", "--ids", ids_file.name, "--rate", str(rate),
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await recorder.communicate()
        os.unlink(ids_file.name)
        if recorder.returncode != 0:
            raise SystemExit("the recorder process failed")
        await asyncio.wait_for(done.wait(), timeout=30)
        for reader in readers:
            reader.cancel()
    finally:
        for ws, _ in sockets:
            await ws.close()
    commit, write = [], []
    for line in output.decode().splitlines():
        stamp = json.loads(line)
        frame = received[(stamp["task_id"], stamp["version"])]
        commit.append(frame - stamp["after"])
        write.append(frame - stamp["before"])
    return commit, write


# --- set-up -------------------------------------------------------------------------------------


def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKSTORE_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="realtime.settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_daphne(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-daphne-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "realtime.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daphne exited; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"daphne did not listen within 60 s; see {log.name}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# --- report -------------------------------------------------------------------------------------


def row(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    return (
        f"| {label} | {len(ms)} | {q(0.5):.2f} | {q(0.9):.2f} | {q(0.99):.2f} | "
        f"{ms[-1]:.2f} | {statistics.fmean(ms):.2f} |"
    )


def machine() -> str:
    cores = os.cpu_count()
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "? GiB"
    return f"{platform.system()} {platform.machine()}, {cores} cores, {memory}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks recorded (4 transitions each)")
    parser.add_argument("--rate", type=float, default=25.0, help="tasks a second (transitions: 4x)")
    parser.add_argument("--role", choices=["recorder", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "recorder":
        role_recorder(args.ids, args.rate)
        return
    if args.role == "floor":
        role_floor_publisher(args.redis, args.count, args.rate)
        return

    postgres = os.environ.get("BENCH_POSTGRES", DEFAULT_POSTGRES).rstrip("/")
    redis_url = os.environ.get("BENCH_REDIS", DEFAULT_REDIS)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    database_url = create_database(postgres, BENCH_DATABASE)
    env = service_env(database_url, redis_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    daphne, port = start_daphne(env)
    try:
        transitions = args.tasks * len(STATES)
        floor = asyncio.run(measure_floor(redis_url, transitions, 4 * args.rate, env))
        commit, write = asyncio.run(measure_push(port, args.tasks, args.rate, env))
    finally:
        stop(daphne)
        drop_database(postgres, BENCH_DATABASE)
    print(f"Push latency, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"{args.tasks} tasks x 4 transitions at {args.rate:g} tasks/s ({4 * args.rate:g} transitions/s)")
    print()
    print("| path | samples | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("Redis PUBLISH -> SUBSCRIBE (floor)", floor))
    print(row("taskstore: commit -> WebSocket frame", commit))
    print(row("taskstore: write + commit -> WebSocket frame", write))
    print("| celery-progress, polling every 500 ms (not measured) | - | 250 | 450 | 495 | 500 | 250 |")


if __name__ == "__main__":
    main()
