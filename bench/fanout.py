"""Fan-out: one task followed by many sockets on one server process.

    .venv/bin/python bench/fanout.py [--sockets 1000] [--versions 60] [--rate 10]
                                     [--layers core,pubsub] [--server daphne|uvicorn]
                                     [--auth token|session]

One run measures, side by side on the same machine, with the same client:

  floor      a bare ASGI application (``bench/floor_app.py``: no Channels, no database) that
             subscribes once to a Redis pub/sub channel and writes each message, encoded once, to
             every open socket; a publisher process PUBLISHes stamped messages at the same rate
  taskstore  the project's ASGI application (``realtime.asgi``, PostgreSQL, the Redis channel
             layer named by ``--layers``); every socket subscribes to one task (with its token)
             and a recorder process records the task's versions with ``taskstore.recorder.record``
             at a steady rate (PENDING, RECEIVED, STARTED, PROGRESS x (versions - 4), SUCCESS);
             with ``--auth session`` each socket also comes logged in, with a Django session of
             its own (its cookie on the handshake), so the server checks every session again
             each TASKSTORE_RECONCILE_INTERVAL

and for each: commit (or publish) -> frame over all sockets (p50, p99, max), the spread of one
version from the first socket to the last, delivered / expected (each socket must receive every
version once, in order), the server's RSS per idle subscribed socket, and a reconnect storm: all
sockets closed, then opened again at once, each subscribing with ``since`` (the floor: all
sockets opened again at once). Stamps are CLOCK_MONOTONIC, shared by every process here.

Both servers listen with a backlog of 4096 (daphne's default, 50, refuses a storm of connects).
Needs PostgreSQL (creates and drops a database of its own) and Redis (flushes a database of its
own, 4 by default: BENCH_REDIS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clock import now, pace, stamp_commits  # noqa: E402
from bench.push_latency import machine, service_env  # noqa: E402
from bench.scratch import create_database, drop_database, free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/4"
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "taskstore_bench_fanout")
FLOOR_CHANNEL = "bench.fanout.floor"
# Sockets opened at once while setting up (the storm opens all of them at once).
OPEN_CONCURRENCY = 100
# The floor's messages are padded to about the size of a task.update frame.
FRAME_BYTES = 480


def states_for(versions: int) -> list[tuple[str, Any]]:
    """The transitions recorded, in order: ``versions`` of them."""
    steps = versions - 4
    return [
        ("PENDING", None),
        ("RECEIVED", None),
        ("STARTED", None),
        *(("PROGRESS", {"current": i, "total": steps}) for i in range(1, steps + 1)),
        ("SUCCESS", steps),
    ]


# --- child roles ---------------------------------------------------------------------------------


def role_recorder(task_id: str, versions: int, rate: float) -> None:
    """Record ``versions`` transitions of ``task_id``, ``rate`` a second; print each one's stamps."""
    import django

    django.setup()
    from taskstore.publisher import publisher
    from taskstore.recorder import Transition, record

    commits = stamp_commits()  # the commit, not record()'s return: it may include the send
    # The first record of a process opens its connections: not the steady state measured.
    record(Transition(task_id=f"bench-warm-up-{uuid4()}", state="PENDING", task_name="bench.fanout"))
    publisher.flush(timeout=30)
    interval = 1.0 / rate
    start = now() + 0.2
    out = []
    for index, (state, payload) in enumerate(states_for(versions)):
        pace(start, index, interval)
        transition = Transition(
            task_id=task_id,
            state=state,
            task_name="bench.fanout",
            progress=payload if state == "PROGRESS" else None,
            result=payload if state == "SUCCESS" else None,
        )
        before = now()
        document = record(transition)
        if document is None:
            raise SystemExit(f"record() refused {state}")
        out.append({"version": document["version"], "before": before, "after": commits[-1]})
    publisher.flush(timeout=30)
    sys.stdout.write("\n".join(json.dumps(line) for line in out) + "\n")


def role_floor_publisher(redis_url: str, versions: int, rate: float) -> None:
    """PUBLISH ``versions`` stamped messages, ``rate`` a second; print each one's stamp."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    connection.ping()
    interval = 1.0 / rate
    start = now() + 0.2
    out = []
    for index in range(versions):
        pace(start, index, interval)
        version = index + 1
        body = json.dumps({"type": "floor", "version": version, "pad": ""})
        body = body.replace('"pad": ""', '"pad": "' + "x" * max(0, FRAME_BYTES - len(body)) + '"')
        before = now()
        connection.publish(FLOOR_CHANNEL, body)
        out.append({"version": version, "before": before, "after": before})
    sys.stdout.write("\n".join(json.dumps(line) for line in out) + "\n")


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: str

    def rss(self) -> int:
        """Resident memory of the server process, bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        """CPU seconds the server process used so far (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_server(kind: str, app: str, env: dict[str, str]) -> Server:
    """Start one ``kind`` (daphne or uvicorn) server process serving ``app``."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"bench-fanout-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
    if kind == "daphne":
        endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
        args = [str(VENV_BIN / "daphne"), "-e", endpoint, app]
    else:
        args = [
            str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--backlog", "4096",
            "--log-level", "warning", "--no-access-log", "--lifespan", "off", app,
        ]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} exited; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Server(proc, port, log.name)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{kind} did not listen within 60 s; see {log.name}")


# --- the client ----------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    latencies: list[float] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)
    delivered: int = 0
    expected: int = 0
    in_order: int = 0
    sockets: int = 0
    rss_per_socket: float = 0.0
    cpu_per_version_ms: float = 0.0
    storm_seconds: float | None = None
    storm_failed: int = 0
    storm_complete: int = 0


class Follower:
    """One socket: stamps every frame it reads."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, float]] = []
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for text in self.ws:
            stamp = now()
            frame = json.loads(text)
            if frame.get("type") in ("task.update", "floor"):
                self.arrivals.append((frame["version"], stamp))


async def connect(port: int, path: str, cookie: str | None = None) -> Any:
    from websockets.asyncio.client import connect as ws_connect

    return await ws_connect(
        f"ws://127.0.0.1:{port}{path}",
        proxy=None,
        open_timeout=120,
        ping_interval=None,
        max_size=2**22,
        additional_headers={"Cookie": cookie} if cookie else None,
    )


def logged_in_cookies(count: int) -> list[str]:
    """The ``Cookie`` headers of ``count`` Django sessions of one user, each as a login makes it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = User.objects.get_or_create(username="bench-follower")
    cookies = []
    for _ in range(count):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return cookies


async def open_followers(
    port: int,
    path: str,
    count: int,
    subscribe: dict[str, Any] | None,
    limit: int,
    cookies: list[str] | None = None,
) -> list[Follower]:
    """Open ``count`` sockets (``limit`` at a time, each with its cookie if given); subscribe each
    and wait for its first frame."""
    gate = asyncio.Semaphore(limit)
    cookie_of = iter(cookies or [])

    async def one() -> Follower:
        follower = Follower()
        async with gate:
            follower.ws = await connect(port, path, next(cookie_of, None))
            if subscribe is not None:
                await follower.ws.send(json.dumps(subscribe))
                first = json.loads(await asyncio.wait_for(follower.ws.recv(), 60))
                if first.get("type") != "task.update":
                    raise SystemExit(f"unexpected answer to subscribe: {first}")
        follower.reader = asyncio.create_task(follower.read())
        return follower

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(followers: list[Follower]) -> None:
    for follower in followers:
        if follower.reader is not None:
            follower.reader.cancel()
    await asyncio.gather(*(f.ws.close() for f in followers), return_exceptions=True)


async def wait_settled(server: Server, seconds: float = 1.0) -> int:
    """RSS once it stopped moving for ``seconds`` (at most 15 s)."""
    last, stable_since, deadline = server.rss(), now(), now() + 15
    while now() < deadline:
        await asyncio.sleep(0.2)
        rss = server.rss()
        if abs(rss - last) > 64 * 1024:
            last, stable_since = rss, now()
        elif now() - stable_since >= seconds:
            break
    return server.rss()


async def measure(
    label: str, server: Server, args: argparse.Namespace, env: dict[str, str], floor: bool
) -> Result:
    """One configuration: open, follow, stream, storm."""
    result = Result(label, sockets=args.sockets)
    task_id = str(uuid4())
    subscribe = None
    path = "/"
    if not floor:
        from taskstore.tokens import make_token

        token = make_token(task_id)
        subscribe = {"type": "subscribe", "task_id": task_id, "token": token}
        path = "/ws/tasks/"
        # Warm up the server's code paths and connections with a socket of its own.
        warm = await open_followers(
            server.port,
            path,
            1,
            {**subscribe, "task_id": "warm-" + task_id, "token": make_token("warm-" + task_id)},
            1,
        )
        await close_all(warm)
    else:
        warm = await open_followers(server.port, path, 1, None, 1)
        await close_all(warm)
    cookies = None
    if not floor and args.auth == "session":
        cookies = await asyncio.to_thread(logged_in_cookies, args.sockets)
    base = await wait_settled(server)
    followers = await open_followers(server.port, path, args.sockets, subscribe, OPEN_CONCURRENCY, cookies)
    opened = await wait_settled(server)
    result.rss_per_socket = (opened - base) / args.sockets

    cpu_before = server.cpu()
    if floor:
        cmd = [sys.executable, __file__, "--role", "floor", "--redis", args.redis_url]
    else:
        cmd = [sys.executable, __file__, "--role", "recorder", "--task", task_id]
    cmd += ["--versions", str(args.versions), "--rate", str(args.rate)]
    child = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE)
    output, _ = await child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"the {'publisher' if floor else 'recorder'} process failed")
    stamps = {line["version"]: line["after"] for line in map(json.loads, output.decode().splitlines())}
    last = max(stamps)
    deadline = now() + 30
    while now() < deadline and not all(f.arrivals and f.arrivals[-1][0] >= last for f in followers):
        await asyncio.sleep(0.05)
    result.cpu_per_version_ms = (server.cpu() - cpu_before) * 1000 / len(stamps)

    by_version: dict[int, list[float]] = {}
    result.expected = len(stamps) * len(followers)
    for follower in followers:
        versions = [v for v, _ in follower.arrivals]
        if versions == sorted(stamps):
            result.in_order += 1
        seen = set()
        for version, stamp in follower.arrivals:
            if version in stamps and version not in seen:
                seen.add(version)
                result.delivered += 1
                result.latencies.append(stamp - stamps[version])
                by_version.setdefault(version, []).append(stamp)
    result.spreads = [max(s) - min(s) for s in by_version.values()]

    if args.storm:
        await close_all(followers)
        await wait_settled(server, seconds=0.5)
        resume = None if floor else {**subscribe, "since": last - 1}
        started = now()
        finished: list[float] = []

        async def again(cookie: str | None) -> None:
            ws = await connect(server.port, path, cookie)
            try:
                if resume is not None:
                    await ws.send(json.dumps(resume))
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    if frame.get("version") != last:
                        raise RuntimeError(f"resumed with {frame}")
                finished.append(now())
            finally:
                await ws.close()

        outcomes = await asyncio.gather(
            *(again(cookies[n] if cookies else None) for n in range(len(followers))), return_exceptions=True
        )
        result.storm_failed = sum(isinstance(o, BaseException) for o in outcomes)
        result.storm_complete = len(finished)
        if finished:
            result.storm_seconds = max(finished) - started
    else:
        await close_all(followers)
    return result


# --- report --------------------------------------------------------------------------------------


def quantile(samples: list[float], p: float) -> float:
    ms = sorted(samples)
    return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))] * 1000 if ms else float("nan")


def report(results: list[Result], floor: Result) -> None:
    print("| configuration | p50 ms | p99 ms | max ms | spread p50 ms | spread p99 ms | delivered / expected "
          "| sockets in order | RSS KiB / socket | server CPU ms / version | storm s (failed) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in results:
        storm = "-" if r.storm_seconds is None else f"{r.storm_seconds:.2f} ({r.storm_failed})"
        print(
            f"| {r.label} | {quantile(r.latencies, 0.5):.1f} | {quantile(r.latencies, 0.99):.1f} | "
            f"{quantile(r.latencies, 1.0):.1f} | {quantile(r.spreads, 0.5):.1f} | "
            f"{quantile(r.spreads, 0.99):.1f} | {r.delivered} / {r.expected} | {r.in_order} / {r.sockets} | "
            f"{r.rss_per_socket / 1024:.1f} | {r.cpu_per_version_ms:.1f} | {storm} |"
        )
    print()
    print("Ratios to the floor (targets: p99 <= 1.25; RSS <= floor + 8 KiB; storm <= 2.0):")
    for r in results:
        if r is floor:
            continue
        p99 = quantile(r.latencies, 0.99) / quantile(floor.latencies, 0.99)
        p50 = quantile(r.latencies, 0.5) / quantile(floor.latencies, 0.5)
        extra = (r.rss_per_socket - floor.rss_per_socket) / 1024
        storm = (
            f"{r.storm_seconds / floor.storm_seconds:.2f}" if r.storm_seconds and floor.storm_seconds else "-"
        )
        print(
            f"- {r.label}: p50 x{p50:.2f}, p99 x{p99:.2f}, RSS floor {extra:+.1f} KiB/socket, storm x{storm}"
        )


# --- set-up --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000, help="sockets following the task")
    parser.add_argument("--versions", type=int, default=60, help="versions recorded (at least 5)")
    parser.add_argument("--rate", type=float, default=10.0, help="versions a second")
    parser.add_argument("--layers", default="core,pubsub", help="channel layers: core, pubsub")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--no-storm", dest="storm", action="store_false", help="skip the reconnect storm")
    parser.add_argument(
        "--auth", choices=["token", "session"], default="token", help="sockets subscribe with a token only, "
        "or come logged in with a session each as well"
    )  # fmt: skip
    parser.add_argument("--role", choices=["recorder", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--redis", dest="redis_url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.versions < 5:
        parser.error("--versions must be at least 5 (PENDING, RECEIVED, STARTED, PROGRESS, SUCCESS)")
    if args.role == "recorder":
        role_recorder(args.task, args.versions, args.rate)
        return
    if args.role == "floor":
        role_floor_publisher(args.redis_url, args.versions, args.rate)
        return
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    unknown = set(layers) - {"core", "pubsub"}
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}: expected core, pubsub")

    postgres = os.environ.get("BENCH_POSTGRES", DEFAULT_POSTGRES).rstrip("/")
    args.redis_url = os.environ.get("BENCH_REDIS", DEFAULT_REDIS)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    database_url = create_database(postgres, BENCH_DATABASE)
    env = service_env(database_url, args.redis_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    load = os.getloadavg()
    results: list[Result] = []
    try:
        floor_env = {**env, "FLOOR_REDIS_URL": args.redis_url, "FLOOR_CHANNEL": FLOOR_CHANNEL}
        server = start_server(args.server, "bench.floor_app:application", floor_env)
        try:
            floor = asyncio.run(
                measure(f"floor ({args.server}, bare ASGI + Redis pub/sub)", server, args, env, True)
            )
        finally:
            server.stop()
        results.append(floor)
        for layer in layers:
            layer_env = {**env, "CHANNEL_LAYER": layer}
            server = start_server(args.server, "realtime.asgi:application", layer_env)
            try:
                label = f"taskstore ({args.server}, {layer} layer{', sessions' if args.auth == 'session' else ''})"
                results.append(asyncio.run(measure(label, server, args, layer_env, False)))
            finally:
                server.stop()
    finally:
        drop_database(postgres, BENCH_DATABASE)
    print(f"Fan-out, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}")
    print(
        f"{args.sockets} sockets on one {args.server} following one task: {args.versions} versions at "
        f"{args.rate:g}/s; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print()
    report(results, results[0])


if __name__ == "__main__":
    main()
