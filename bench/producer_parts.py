"""Where a producer's ``.delay()`` time goes: the same loop with one part of taskstore's work left out at a time.

    .venv/bin/python bench/producer_parts.py [--tasks N] [--rounds R]

``bench/worker_overhead.py`` times the producer of (a) plain Celery and (c) taskstore. This
bench takes (c) apart. Each part runs in a fresh producer process (the role ``produce`` of
bench/worker_overhead.py, ``N`` ``add.delay()`` calls, the publisher drained at the end), in
rounds, the parts interleaved:

  (a)          plain Celery, taskstore not installed (bench/settings_plain.py)
  (c)          taskstore: PENDING written to PostgreSQL and pushed to the Redis channel layer
  (c) no send  as (c); the publisher takes each batch (the calling thread's sender, or the
               sending thread for what it hands over) but sends nothing to Redis
  (c) no push  as (c); nothing is handed to the publisher at all
  (c) no write as (c); on_publish records nothing (no write, no push): what is left is
               Celery's own path with taskstore's result backend configured

and prints each part's rate, its ratio to (a), and the producer's CPU per call (main thread +
other threads). The differences between neighbouring rows are what each part costs. The parts
are left out with ``unittest.mock`` in the producer process only: nothing here changes taskstore.

Needs PostgreSQL (creates and drops a database of its own) and Redis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import worker_overhead  # noqa: E402
from bench.scratch import create_database, drop_database  # noqa: E402

# (key, label, settings module)
PARTS = (
    ("a", "(a) plain Celery", "bench.settings_plain"),
    ("c", "(c) taskstore", "bench.settings_taskstore"),
    ("no-send", "(c) no send to Redis", "bench.settings_taskstore"),
    ("no-push", "(c) nothing handed to the publisher", "bench.settings_taskstore"),
    ("no-write", "(c) no PENDING write, no push", "bench.settings_taskstore"),
)


def produce_without(part: str, count: int) -> dict[str, float]:
    """The producer role with ``part`` of taskstore's work left out (in this process only)."""
    from unittest import mock

    import django

    django.setup()  # taskstore's modules import its models
    patches: list[Any] = []
    if part == "no-send":

        async def send_nothing(self: Any, batch: list[Any]) -> None:
            return None

        patches.append(mock.patch("taskstore.publisher._Sender._send", send_nothing))
        # With channels-redis' layers the calling thread sends (taskstore.blocking_send).
        patches.append(mock.patch("taskstore.blocking_send.BlockingSender.send", lambda self, messages: []))
    elif part == "no-push":
        patches.append(mock.patch("taskstore.publisher.Publisher.publish", lambda self, messages: None))
    elif part == "no-write":
        patches.append(mock.patch("taskstore.signals.record", lambda transition: None))
    for patch in patches:
        patch.start()
    return worker_overhead.produce(count)


def run(tasks: int, rounds: int, postgres: str, redis_url: str) -> dict[str, list[dict[str, float]]]:
    """Every part, ``rounds`` times; each run's figures by part."""
    import redis

    runs: dict[str, list[dict[str, float]]] = {key: [] for key, _, _ in PARTS}
    database_url = create_database(postgres, worker_overhead.BENCH_DATABASE)
    try:
        worker_overhead.migrate(database_url, redis_url)
        for round_index in range(rounds):
            shift = round_index % len(PARTS)
            for key, _, settings in PARTS[shift:] + PARTS[:shift]:
                worker_overhead.empty_tables(database_url)
                redis.Redis.from_url(redis_url).flushdb()
                env = worker_overhead.child_env(settings, database_url, redis_url, tasks)
                figures = worker_overhead.run_role(
                    [f"--role={key}", f"--tasks={tasks}"], env, script=Path(__file__).resolve()
                )
                runs[key].append(figures)
                print(
                    f"round {round_index + 1}/{rounds} ({key}): {tasks / figures['seconds']:,.0f}/s",
                    file=sys.stderr,
                )
    finally:
        drop_database(postgres, worker_overhead.BENCH_DATABASE)
    return runs


def render(runs: dict[str, list[dict[str, float]]], tasks: int, rounds: int) -> str:
    """The table: medians over the rounds."""

    def rate(key: str) -> float:
        return statistics.median(tasks / r["seconds"] for r in runs[key])

    def cpu(key: str, thread: str) -> float:
        return statistics.median(r.get(f"{thread} µs", 0.0) for r in runs[key])

    plain = rate("a")
    lines = [
        f"{tasks} add.delay() calls per run, {rounds} round(s), parts interleaved; medians over the rounds.",
        "",
        "| part | calls/s | / (a) | µs per call | producer CPU µs per call (main + other threads) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label, _ in PARTS:
        lines.append(
            f"| {label} | {rate(key):,.0f} | {rate(key) / plain:.2f} | {1e6 / rate(key):,.0f} "
            f"| {cpu(key, 'main thread'):,.0f} + {cpu(key, 'other threads'):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print the table (or, in a child process, one part's producer)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000, help="add.delay() calls per run (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all parts (default 3)")
    parser.add_argument("--postgres", default=worker_overhead.DEFAULT_POSTGRES, help="server URL")
    parser.add_argument("--redis", default=worker_overhead.DEFAULT_REDIS, help="a Redis database to flush")
    parser.add_argument("--role", choices=[key for key, _, _ in PARTS], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        print(json.dumps(produce_without(args.role, args.tasks)))
        return 0
    runs = run(args.tasks, args.rounds, args.postgres, args.redis)
    print(render(runs, args.tasks, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
