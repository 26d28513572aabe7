"""Run Celery's own integration tests against Redis and against taskstore's result backend.

    scripts/celery-conformance [--backends redis,taskstore] [-k EXPR] [--tests FILE ...]

(``--backends taskstore`` alone compares with the last Redis run's report, when there is one.)

For the Celery release pinned in ``requirements.lock``: fetches its sdist (which carries
``t/integration/``) into a cache folder, then runs ``t/integration/test_tasks.py`` and
``t/integration/test_canvas.py`` twice, each time with Celery's own session worker (one prefork
child, Redis broker, ``result_extended``):

- ``redis``: Celery's Redis result backend, Redis database 12, no Django: the baseline;
- ``taskstore``: ``taskstore.backend:DatabaseBackend`` on a fresh PostgreSQL database
  (``conformance_taskstore``), Redis database 13 for the broker and the channel layer.

It prints both runs' counts, every test that passes with Redis but not with taskstore, and every
test the taskstore run skipped because it needs the Redis result backend. The exit status is 1
when a test that passes with Redis does not pass with taskstore.

Needs PostgreSQL and Redis (``DATABASE_URL``'s server and ``REDIS_URL``'s host; the database
numbers are fixed), and the network to a package index the first time (``pip download``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[2]
SUITE_FILES = ("t/integration/test_tasks.py", "t/integration/test_canvas.py")
DATABASE = "conformance_taskstore"
REDIS_DATABASES = {"redis": 12, "taskstore": 13}
SECRET_KEY = "celery-conformance-secret-key-not-for-production-0123456789"
PYTEST_INI = """[pytest]
addopts = --strict-markers -p no:cacheprovider
python_classes = test_*
markers =
    flaky
    timeout
"""
# Plugins of this project's environment that have no business in Celery's suite (pytest-django
# would refuse the backend's database access outside a django_db test).
DISABLED_PLUGINS = ("django", "asyncio", "playwright", "base_url")


@dataclass
class Outcome:
    """One test's final outcome in one run."""

    status: str  # passed, failed, error, skipped
    message: str = ""


@dataclass
class Run:
    """One backend's run of the suite."""

    backend: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0
    log: Path | None = None

    def count(self, status: str) -> int:
        """How many tests ended with ``status``."""
        return sum(1 for o in self.outcomes.values() if o.status == status)


def celery_version() -> str:
    """The Celery version pinned in requirements.lock."""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == "celery":
            return version.strip()
    raise SystemExit("requirements.lock pins no celery version")


def cache_dir() -> Path:
    """Where the sdist, the unpacked suite and the run logs live (never committed)."""
    var = Path(os.environ.get("TASKSTORE_VAR_DIR") or ROOT / "var")
    return var / "celery-conformance"


def fetch_suite(version: str) -> Path:
    """Download Celery's sdist and unpack its ``t/`` folder; return the folder holding ``t/``."""
    suite = cache_dir() / f"celery-{version}-suite"
    if (suite / "t" / "integration" / "test_canvas.py").exists():
        return suite
    downloads = cache_dir() / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / f"celery-{version}.tar.gz"
    if not archive.exists():
        print(f"Downloading Celery {version}'s sdist into {downloads}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-binary", ":all:", "--no-deps", f"celery=={version}", "-d", str(downloads)],
            check=True,
        )  # fmt: skip
    prefix = f"celery-{version}/t/"
    staging = suite.with_name(suite.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(f"celery-{version}/") :]
        tar.extractall(staging, members=members, filter="data")
    # Only t/ is unpacked: the sdist's own celery/ package must not shadow the installed one.
    (staging / "pytest.ini").write_text(PYTEST_INI)
    staging.rename(suite)
    return suite


def _with_path(url: str, path: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=path))


def redis_url(backend: str) -> str:
    """The Redis database of one run."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return _with_path(base, f"/{REDIS_DATABASES[backend]}")


def database_url() -> str:
    """The PostgreSQL database of the taskstore run."""
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    return _with_path(base, f"/{DATABASE}")


def fresh_database() -> str:
    """Drop and create the taskstore run's database, migrate it; return its URL."""
    import psycopg

    url = database_url()
    with psycopg.connect(_with_path(url, "/postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=taskstore_env(url),
        check=True,
    )
    return url


def flush_redis(url: str) -> None:
    """Empty one run's own Redis database."""
    import redis

    redis.Redis.from_url(url).flushdb()


def base_env(redis: str) -> dict[str, str]:
    """The environment both runs share."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "TASKSTORE_", "PYTEST", "TEST_", "DATABASE_URL", "REDIS_"))
    }
    env.update(CONFORMANCE_REDIS_URL=redis, PYTHONUNBUFFERED="1")
    return env


def taskstore_env(database: str) -> dict[str, str]:
    """The environment of the taskstore run: the example project's settings on its own services."""
    redis = redis_url("taskstore")
    env = base_env(redis)
    env.update(
        DJANGO_SETTINGS_MODULE="realtime.settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_DEBUG="0",
        DATABASE_URL=database,
        REDIS_URL=redis,
        TEST_BROKER=redis,
        TEST_BACKEND="taskstore.backend:DatabaseBackend",
        TASKSTORE_VAR_DIR=str(cache_dir() / "var"),
    )
    return env


def redis_env() -> dict[str, str]:
    """The environment of the baseline run: Celery's Redis result backend, no Django."""
    redis = redis_url("redis")
    env = base_env(redis)
    env.update(TEST_BROKER=redis, TEST_BACKEND=redis)
    return env


def run_suite(backend: str, suite: Path, tests: list[str], keyword: str | None) -> Run:
    """Run the suite for one backend; return every test's outcome."""
    env = taskstore_env(fresh_database()) if backend == "taskstore" else redis_env()
    flush_redis(env["CONFORMANCE_REDIS_URL"])
    env["PYTHONPATH"] = os.pathsep.join([str(suite), str(ROOT)])
    name = f"{backend}-redis-only-tests" if os.environ.get("CONFORMANCE_RUN_REDIS_ONLY_TESTS") else backend
    report = cache_dir() / f"{name}.xml"
    report.unlink(missing_ok=True)
    log = cache_dir() / f"{name}.log"
    args = [sys.executable, "-m", "pytest", *tests, "-c", str(suite / "pytest.ini"), "--rootdir", str(suite)]
    args += [arg for name in DISABLED_PLUGINS for arg in ("-p", f"no:{name}")]
    args += [
        "-p",
        "celery.contrib.pytest",
        "-p",
        "tests.celery_suite.plugin",
        f"--junitxml={report}",
        "-q",
        "-rfEs",
    ]
    if keyword:
        args += ["-k", keyword]
    print(f"[{backend}] running {' '.join(tests)} (log: {log})", flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        subprocess.run(args, cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    run = Run(backend, outcomes=read_report(report), seconds=time.monotonic() - started, log=log)
    print(f"[{backend}] {summary(run)} in {run.seconds:.0f} s", flush=True)
    return run


def read_report(path: Path) -> dict[str, Outcome]:
    """Each test's final outcome from a JUnit XML report (the last entry wins over reruns)."""
    if not path.exists():
        raise SystemExit(f"pytest wrote no report at {path}: see the log beside it")
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = Outcome("passed")
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                lines = (child.text or "").strip().splitlines()
                outcome = Outcome(status, child.get("message") or (lines[-1] if lines else ""))
                break
        outcomes[name] = outcome
    return outcomes


def summary(run: Run) -> str:
    """``N passed, N failed, N skipped`` (and errors, when any)."""
    parts = [f"{run.count('passed')} passed", f"{run.count('failed')} failed"]
    if run.count("error"):
        parts.append(f"{run.count('error')} errors")
    parts.append(f"{run.count('skipped')} skipped")
    return ", ".join(parts)


def compare(baseline: Run, candidate: Run) -> dict[str, list[tuple[str, str]]]:
    """What differs from the Redis run: its passing tests that fail, or are skipped, with taskstore."""
    passed = [name for name, o in sorted(baseline.outcomes.items()) if o.status == "passed"]
    seen = [(name, candidate.outcomes[name]) for name in passed if name in candidate.outcomes]
    return {
        "regressions": [(n, f"{o.status}: {o.message}") for n, o in seen if o.status in ("failed", "error")],
        "skipped": [(n, o.message) for n, o in seen if o.status == "skipped"],
        "failed_with_both": [
            (name, baseline.outcomes[name].status if name in baseline.outcomes else "not run")
            for name, outcome in sorted(candidate.outcomes.items())
            if outcome.status in ("failed", "error") and name not in passed
        ],
        "passed_only_with_taskstore": [
            (name, baseline.outcomes[name].status)
            for name, outcome in sorted(candidate.outcomes.items())
            if outcome.status == "passed"
            and name in baseline.outcomes
            and baseline.outcomes[name].status != "passed"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Fetch the suite, run it per backend, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="redis,taskstore", help="comma-separated: redis, taskstore")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression, for a partial run")
    parser.add_argument("--tests", nargs="*", default=list(SUITE_FILES), help="test files or node ids")
    parser.add_argument(
        "--redis-only-tests",
        action="store_true",
        help="taskstore run only: also run the tests the suite keeps for the Redis result backend",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(REDIS_DATABASES)
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}: use redis and/or taskstore")

    version = celery_version()
    suite = fetch_suite(version)
    print(f"Celery {version}'s integration suite from {suite}", flush=True)
    started = time.monotonic()
    if args.redis_only_tests:
        if backends != ["taskstore"]:
            parser.error("--redis-only-tests goes with --backends taskstore")
        os.environ["CONFORMANCE_RUN_REDIS_ONLY_TESTS"] = "1"
    runs = {backend: run_suite(backend, suite, args.tests, args.keyword) for backend in backends}
    print(f"\nCelery {version}, {' + '.join(args.tests)}; {time.monotonic() - started:.0f} s in all")
    for run in runs.values():
        print(f"  {run.backend:10} {summary(run)}  ({run.seconds:.0f} s)")
    if "redis" not in runs and "taskstore" in runs and (cache_dir() / "redis.xml").exists():
        # Iterating on taskstore: compare with the last Redis run instead of repeating it.
        runs["redis"] = Run("redis", outcomes=read_report(cache_dir() / "redis.xml"))
        print(f"  {'redis':10} {summary(runs['redis'])}  (the previous run's report)")
    if len(runs) < 2:
        return 0 if all(r.count("failed") + r.count("error") == 0 for r in runs.values()) else 1

    diff = compare(runs["redis"], runs["taskstore"])
    (cache_dir() / "comparison.json").write_text(json.dumps(diff, indent=2))
    print(f"\nPass with Redis, fail with taskstore: {len(diff['regressions'])}")
    for name, why in diff["regressions"]:
        print(f"  {name}  [{' '.join(why.split())[:160]}]")
    reasons = Counter(why for _, why in diff["skipped"])
    print(f"\nPass with Redis, skipped with taskstore: {len(diff['skipped'])}")
    for why, count in reasons.most_common():
        print(f"  {count:3}  {why}")
    for name, why in diff["skipped"]:
        print(f"  {name}  [{why[:100]}]")
    if diff["failed_with_both"]:
        print(f"\nFail with taskstore, do not pass with Redis either: {len(diff['failed_with_both'])}")
        for name, status in diff["failed_with_both"]:
            print(f"  {name}  [redis: {status}]")
    if diff["passed_only_with_taskstore"]:
        print(f"\nPass with taskstore, not with Redis: {len(diff['passed_only_with_taskstore'])}")
        for name, status in diff["passed_only_with_taskstore"]:
            print(f"  {name}  [redis: {status}]")
    return 1 if diff["regressions"] else 0


if __name__ == "__main__":
    sys.exit(main())
