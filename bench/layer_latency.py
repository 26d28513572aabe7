"""Channel-layer latency: the layer's share of the push latency, for each Redis layer.

    .venv/bin/python bench/layer_latency.py [--messages N] [--rate R] [--redis URL]

bench/push_latency.py measures commit -> WebSocket frame whole. This takes the channel layer
alone, in the shape the product uses it: a server process in one group and a sender in another
process, at a steady rate.

  floor        redis-py PUBLISH -> SUBSCRIBE (bench/push_latency.py's floor)
  group_send   ``await layer.group_send`` on the sender's own loop
  publisher    taskstore's publisher, called from a plain thread as a worker's pool child calls
               it (its own sending thread; with the core layer, the members and their copies in
               two scripts: taskstore/core_groups.py)
  receive      a channel of the receiving process and ``layer.receive``
  hub          taskstore's fan-out hub, as a server process receives (taskstore/fanout.py; on
               the core layer one reader for all its channels: taskstore/core_reader.py)

Each message carries its send stamp (CLOCK_MONOTONIC, shared by the machine's processes); the
receiver stamps it as ``receive`` returns or the hub hands it over. Needs Redis (flushes a database of its own, 15 by
default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clock import now, pace  # noqa: E402
from bench.push_latency import machine, measure_floor, row  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
SECRET_KEY = "bench-layer-latency-not-a-secret-0123456789abcdef"
GROUP = "bench.layer-latency"
LAYERS = ("core", "pubsub")
SENDERS = ("group_send", "publisher")
RECEIVERS = ("receive", "hub")
# (sender, receiver) per layer: the layer alone, taskstore's sending side, then both of its sides.
PATHS = (("group_send", "receive"), ("publisher", "receive"), ("publisher", "hub"))


# --- child roles -------------------------------------------------------------------------------


def role_receive(receiver: str, count: int) -> None:
    """Join GROUP, say "ready", then print the latency of each of ``count`` messages (seconds, a
    JSON list). ``receiver``: "receive" (a channel of this process and ``layer.receive``) or
    "hub" (taskstore's fan-out hub, as a server process receives: on the core layer its one
    reader for all its channels, taskstore/core_reader.py)."""
    import django

    django.setup()
    from channels.layers import get_channel_layer

    from taskstore.fanout import hub_for

    class Member:
        def __init__(self) -> None:
            self.arrived: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

        def offer(self, message: dict[str, Any]) -> None:
            self.arrived.put_nowait((now(), message))

    async def receive() -> list[float]:
        layer = get_channel_layer()
        if receiver == "hub":
            member = Member()
            await hub_for(layer).join(GROUP, member)

            async def next_message() -> tuple[float, dict[str, Any]]:
                return await member.arrived.get()
        else:
            channel = await layer.new_channel()
            await layer.group_add(GROUP, channel)

            async def next_message() -> tuple[float, dict[str, Any]]:
                message = await layer.receive(channel)
                return now(), message

        print("ready", flush=True)
        samples: list[float] = []
        while len(samples) < count:
            received, message = await next_message()
            if message["i"] >= 0:
                samples.append(received - message["sent"])
        return samples

    print(json.dumps(asyncio.run(receive())), flush=True)


def role_send(sender: str, count: int, rate: float) -> None:
    """Send ``count`` stamped messages to GROUP, ``rate`` a second, evenly, the ``sender`` way."""
    import django

    django.setup()
    from channels.layers import get_channel_layer

    interval = 1.0 / rate
    if sender == "publisher":
        from taskstore.publisher import publisher

        def send(index: int) -> None:
            publisher.publish([(GROUP, {"type": "bench.stamp", "i": index, "sent": now()})])

        send(-1)  # warm-up (starts the sending thread and its connections), not counted
        publisher.flush(timeout=10)
        start = now() + 0.2
        for index in range(count):
            pace(start, index, interval)
            send(index)
        if not publisher.flush(timeout=30):
            raise SystemExit("the publisher did not send every message")
        return

    async def send_all() -> None:
        layer = get_channel_layer()
        await layer.group_send(GROUP, {"type": "bench.stamp", "i": -1, "sent": now()})
        start = now() + 0.2
        for index in range(count):
            delay = start + index * interval - now()
            if delay > 0:
                await asyncio.sleep(delay)
            await layer.group_send(GROUP, {"type": "bench.stamp", "i": index, "sent": now()})

    asyncio.run(send_all())


# --- the measuring side -------------------------------------------------------------------------


def child_env(redis_url: str, layer: str) -> dict[str, str]:
    """The project's settings on ``layer``, without a database (nothing here reads one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKSTORE_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="realtime.settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        REDIS_URL=redis_url,
        CHANNEL_LAYER=layer,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def role(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", name, *args]


def measure(redis_url: str, layer: str, sender: str, receiver: str, count: int, rate: float) -> list[float]:
    """Latencies of ``count`` messages through ``layer``, sent the ``sender`` way and received
    the ``receiver`` way."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = child_env(redis_url, layer)
    # Warm-up message included: the receiver waits for it too.
    receiving = subprocess.Popen(
        role("receive", "--receiver", receiver, "--messages", str(count)),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiving.stdout is not None
    ready = receiving.stdout.readline().strip()
    if ready != "ready":
        receiving.kill()
        raise SystemExit(f"the receiver did not start ({layer})")
    timer = threading.Timer(count / rate + 60, receiving.kill)
    timer.start()
    try:
        subprocess.run(
            role("send", "--sender", sender, "--messages", str(count), "--rate", str(rate)),
            env=env,
            check=True,
        )
        output, _ = receiving.communicate()
    finally:
        timer.cancel()
    if receiving.returncode != 0:
        raise SystemExit(f"the receiver failed or timed out ({layer}, {sender}, {receiver})")
    samples: list[float] = json.loads(output.strip().splitlines()[-1])
    return samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per row (default 1000)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages a second (default 100)")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"a Redis database to flush ({DEFAULT_REDIS})")
    parser.add_argument("--role", choices=["receive", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--sender", choices=SENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--receiver", choices=RECEIVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rate <= 0:
        parser.error("--messages must be at least 1 and --rate more than 0")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every row and print the table."""
    args = parse_args(argv)
    if args.role == "receive":
        role_receive(args.receiver, args.messages)
        return
    if args.role == "send":
        role_send(args.sender, args.messages, args.rate)
        return

    floor_env = child_env(args.redis, "core")
    rows = [
        (
            "Redis PUBLISH -> SUBSCRIBE (floor)",
            asyncio.run(measure_floor(args.redis, args.messages, args.rate, floor_env)),
        )
    ]
    for layer in LAYERS:
        for sender, receiver in PATHS:
            rows.append(
                (
                    f"{layer}: {sender} -> {receiver}",
                    measure(args.redis, layer, sender, receiver, args.messages, args.rate),
                )
            )
    floor_p50 = sorted(rows[0][1])[len(rows[0][1]) // 2]
    print(f"Channel-layer latency, {date.today().isoformat()}, {machine()}")
    print(f"{args.messages} messages at {args.rate:g}/s, one receiving channel in another process\n")
    print("| path | samples | p50 ms | p90 ms | p99 ms | max ms | mean ms | p50 / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, samples in rows:
        p50 = sorted(samples)[len(samples) // 2]
        print(f"{row(label, samples)} {p50 / floor_p50:.1f} |")


if __name__ == "__main__":
    main()
