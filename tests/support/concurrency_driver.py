"""Writes the same transitions for the same tasks from many threads, in random order.

Run as a process of its own (``python -m tests.support.concurrency_driver``) with
DATABASE_URL set; prints how many transitions this process recorded and published as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

from taskstore.publisher import publisher  # noqa: E402
from taskstore.recorder import Transition, record  # noqa: E402

# One task's life, with a retry: what every writer tries to record, plus duplicates and a late
# STARTED after SUCCESS.
LIFECYCLE = [
    ("PENDING", 0, None),
    ("RECEIVED", 0, None),
    ("STARTED", 0, None),
    ("PROGRESS", 0, {"current": 1, "total": 2}),
    ("PROGRESS", 0, {"current": 2, "total": 2}),
    ("RETRY", 1, None),
    ("RECEIVED", 1, None),
    ("STARTED", 1, None),
    ("PROGRESS", 1, {"current": 1, "total": 2}),
    ("SUCCESS", 1, None),
]
EXTRA = [("STARTED", 0, None), ("STARTED", 1, None), ("PENDING", 0, None), ("SUCCESS", 1, None)]


def writer(task_ids: list[str], seed: int, counts: list[int]) -> None:
    """Record every task's lifecycle (shuffled, with duplicates) and count what was recorded."""
    rng = random.Random(seed)
    recorded = 0
    work = [(tid, step) for tid in task_ids for step in LIFECYCLE + EXTRA]
    rng.shuffle(work)
    for task_id, (state, attempt, meta) in work:
        doc = record(
            Transition(
                task_id=task_id,
                state=state,
                attempt=attempt,
                progress=meta,
                result=42 if state == "SUCCESS" else None,
                task_name="concurrency.test",
            )
        )
        recorded += doc is not None
    connection.close()
    counts.append(recorded)


def main() -> None:
    """Run the writer threads and report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--prefix", default="c")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task_ids = [f"{args.prefix}-{i}" for i in range(args.tasks)]
    counts: list[int] = []
    published = _count_publishes()
    threads = [
        threading.Thread(target=writer, args=(task_ids, args.seed * 100 + n, counts))
        for n in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.flush(timeout=10)
    print(json.dumps({"recorded": sum(counts), "published": published()}))


def _count_publishes() -> Callable[[], int]:
    """Count the publisher's hand-overs from here on (one per recorded transition here);
    return the count's reader."""
    lock, calls = threading.Lock(), [0]
    publish = publisher.publish

    def counted(messages: Any) -> None:
        with lock:
            calls[0] += 1
        publish(messages)

    publisher.publish = counted  # type: ignore[method-assign]
    return lambda: calls[0]


if __name__ == "__main__":
    main()
