"""Times the operations console's database reads at 1 million recorded tasks.

Makes a PostgreSQL database of its own (``bench_stats``), migrates it, fills the task table with
1,000,000 finished tasks spread evenly over the last 7 days (20 task names, 5 % failures, runtimes
and queue waits drawn by the database) with one ``INSERT … SELECT generate_series``, then times:

* the statistics per task name over the last 15 minutes, hour and day (the windows offered),
  and over all 7 days for comparison;
* one worker heartbeat's reads (finished since the previous beat, running now);
* one round of the metric totals' fold (a page of FOLD_BATCH rows) and a /metrics scrape's reads.

Each figure is the median of RUNS runs after one warm-up. The database is dropped at the end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/stats.py [--rows N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics as stats
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_DB = "bench_stats"
RUNS = 7

_FILL = """
INSERT INTO taskstore_taskrecord (
    task_id, task_name, state, version, position, transition_key, retries, traceback,
    worker, date_created, date_started, date_done, date_updated)
SELECT 'bench-' || i,
       'bench.task_' || (i %% 20),
       CASE WHEN i %% 20 = 7 THEN 'FAILURE' ELSE 'SUCCESS' END,
       4, 1000, '', (i %% 50 = 0)::int, '',
       'celery@bench-' || (i %% 8),
       d - make_interval(secs => w + r), d - make_interval(secs => r), d, d
FROM (
    SELECT i,
           now() - make_interval(secs => (i::float8 / %(rows)s) * 7 * 86400) AS d,
           -ln(random()) * (0.05 + (i %% 20) * 0.1) AS r,
           -ln(random()) * 0.2 AS w
    FROM generate_series(1, %(rows)s) AS i
) AS s
"""


def server_url(database: str) -> str:
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    return urlunparse(urlparse(base)._replace(path=f"/{database}"))


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        conn.execute(sql)


def timed(fn: Callable[[], object]) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return stats.median(runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows

    admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    admin(f"CREATE DATABASE {BENCH_DB}")
    try:
        run(rows)
    finally:
        from django.db import connections

        connections.close_all()
        admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")


def run(rows: int) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="realtime.settings",
        DATABASE_URL=server_url(BENCH_DB),
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or "bench-only-secret-key-0123456789-abcdef",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from taskstore.operations import metrics, pushstats, statistics, tally, workers
    from taskstore.operations.models import WorkerRecord

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(_FILL, {"rows": rows})
    filled = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE taskstore_taskrecord")
    vacuumed = time.perf_counter() - started

    now = timezone.now()
    worker = WorkerRecord(
        hostname="celery@bench-3",
        counted_until=now - timedelta(seconds=5),
        started=now - timedelta(hours=1),
        last_heartbeat=now,
        expires=now,
        date_updated=now,
    )
    figures: list[tuple[str, str, float]] = []
    for name, window in [*statistics.WINDOWS.items(), ("7d (not offered)", timedelta(days=7))]:
        in_window = rows * min(window / timedelta(days=7), 1)
        figures.append(
            (
                f"statistics, window {name}",
                f"~{int(in_window):,} rows",
                timed(lambda w=window: statistics.task_statistics(w)),
            )
        )
    figures.append(
        ("worker heartbeat reads", "5 s of tasks", timed(lambda: workers.counts(worker, timezone.now())))
    )

    def one_fold() -> None:
        from taskstore.operations.models import TaskTally

        TaskTally.objects.all().delete()
        tally.fold()

    figures.append(("metric totals: one fold round", f"{tally.FOLD_BATCH} rows x 2", timed(one_fold)))
    collector = metrics.DatabaseCollector()
    figures.append(("/metrics scrape reads", "20 names", timed(lambda: list(collector.collect()))))
    del pushstats

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + statistics._SQL.format(table="taskstore_taskrecord"),
            ["FAILURE", timezone.now() - timedelta(hours=1)],
        )
        plan = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT version()")
        server = cursor.fetchone()[0].split(",")[0]

    print(f"{rows:,} task rows filled in {filled:.1f} s (VACUUM ANALYZE {vacuumed:.1f} s)")
    print(f"{server}; Python {platform.python_version()}; {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print(f"| {'query':<34} | {'reads':<16} | {'median ms':>9} |")
    print(f"|{'-' * 36}|{'-' * 18}|{'-' * 11}|")
    for what, reads, ms in figures:
        print(f"| {what:<34} | {reads:<16} | {ms:9.1f} |")
    print()
    print("Plan of the statistics query, last hour:")
    for line in plan:
        print("   ", line)


if __name__ == "__main__":
    main()
