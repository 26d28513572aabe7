"""``/metrics``: Prometheus' text exposition format, made with ``prometheus_client``.

Everything is read at scrape time from the database (a few small tables: one row per task name,
worker, queue and server process), so every process answers the same totals and a scrape costs
a handful of indexed reads whatever the size of the task table. Names follow celery-exporter's
where there is one (``celery_task_succeeded_total``, ``celery_worker_up``,
``celery_queue_length``…); docs/operations.md lists them all.

Access: an active staff session, or ``Authorization: Bearer <TASKSTORE_METRICS_TOKEN>``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from taskstore import conf, states
from taskstore.operations import pushstats
from taskstore.operations.documents import worker_status
from taskstore.operations.models import QueueRecord, TaskTally, WorkerRecord
from taskstore.operations.tally import CURSOR_ROW, RUNTIME_BUCKETS, WAIT_BUCKETS
from taskstore.permissions import Viewer

# celery-exporter's counter for each terminal state.
STATE_COUNTERS = {
    states.SUCCESS: ("celery_task_succeeded", "Tasks that succeeded."),
    states.FAILURE: ("celery_task_failed", "Tasks that failed."),
    states.REVOKED: ("celery_task_revoked", "Tasks that were revoked (terminated ones too)."),
    states.REJECTED: ("celery_task_rejected", "Tasks a worker rejected."),
}


class DatabaseCollector:
    """Yields every metric family from the database, once per scrape."""

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus_client's collector protocol)."""
        tallies = list(TaskTally.objects.exclude(task_name=CURSOR_ROW))
        yield from _task_metrics(tallies)
        yield from _worker_metrics()
        yield from _queue_metrics()
        yield from _push_metrics()


def _task_metrics(tallies: list[TaskTally]) -> Iterator[Metric]:
    sent = CounterMetricFamily("celery_task_sent", "Tasks sent (recorded PENDING).", labels=["name"])
    retried = CounterMetricFamily(
        "celery_task_retried", "Retries of finished tasks (their attempt numbers).", labels=["name"]
    )
    by_state = CounterMetricFamily(
        "taskstore_tasks_finished", "Finished tasks by name and terminal state.", labels=["name", "state"]
    )
    counters = {
        state: CounterMetricFamily(metric, text, labels=["name"])
        for state, (metric, text) in STATE_COUNTERS.items()
    }
    runtime = HistogramMetricFamily(
        "celery_task_runtime_seconds", "Task runtime, STARTED to done.", labels=["name"]
    )
    wait = HistogramMetricFamily(
        "taskstore_task_queue_wait_seconds", "Time from PENDING to STARTED.", labels=["name"]
    )
    for tally in tallies:
        name = tally.task_name
        sent.add_metric([name], tally.sent)
        retried.add_metric([name], tally.retries)
        for state, count in sorted((tally.states or {}).items()):
            by_state.add_metric([name, state], count)
        for state, family in counters.items():
            family.add_metric([name], (tally.states or {}).get(state, 0))
        if tally.runtime:
            runtime.add_metric([name], _buckets(tally.runtime, RUNTIME_BUCKETS), tally.runtime["sum"])
        if tally.wait:
            wait.add_metric([name], _buckets(tally.wait, WAIT_BUCKETS), tally.wait["sum"])
    yield from (sent, *counters.values(), retried, by_state, runtime, wait)


def _buckets(histogram: dict[str, Any], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    cumulative, total = [], 0
    for bound, count in zip((*map(str, map(float, bounds)), "+Inf"), histogram["counts"], strict=True):
        total += count
        cumulative.append((bound, total))
    return cumulative


def _worker_metrics() -> Iterator[Metric]:
    now = timezone.now()
    up = GaugeMetricFamily("celery_worker_up", "1 while the worker is online, else 0.", labels=["hostname"])
    lost = GaugeMetricFamily(
        "taskstore_worker_lost", "1 while the worker's heartbeat is late, else 0.", labels=["hostname"]
    )
    active = GaugeMetricFamily(
        "celery_worker_tasks_active", "Tasks the worker is running now.", labels=["hostname"]
    )
    processed = CounterMetricFamily(
        "taskstore_worker_tasks_processed",
        "Tasks the worker finished since it started.",
        labels=["hostname", "outcome"],
    )
    online = 0
    for worker in WorkerRecord.objects.all():
        status = worker_status(worker, now)
        is_up = status == WorkerRecord.ONLINE
        online += is_up
        up.add_metric([worker.hostname], 1 if is_up else 0)
        lost.add_metric([worker.hostname], 1 if status == WorkerRecord.LOST else 0)
        active.add_metric([worker.hostname], worker.running if is_up else 0)
        processed.add_metric([worker.hostname, "succeeded"], worker.succeeded)
        processed.add_metric([worker.hostname, "failed"], worker.failed)
    count = GaugeMetricFamily("celery_active_worker_count", "Workers online.", value=online)
    yield from (up, lost, active, processed, count)


def _queue_metrics() -> Iterator[Metric]:
    length = GaugeMetricFamily(
        "celery_queue_length", "Messages waiting in the queue (absent: unknown).", labels=["queue_name"]
    )
    for queue in QueueRecord.objects.exclude(depth__isnull=True):
        if queue.depth is not None:  # excluded above; the type checker cannot tell
            length.add_metric([queue.name], queue.depth)
    yield length


def _push_metrics() -> Iterator[Metric]:
    totals = pushstats.totals()
    yield GaugeMetricFamily(
        "taskstore_push_open_sockets",
        "WebSockets open on all server processes.",
        value=totals["open_sockets"],
    )
    yield CounterMetricFamily(
        "taskstore_push_frames_sent", "Frames sent to WebSocket clients.", value=totals["frames_sent"]
    )
    yield CounterMetricFamily(
        "taskstore_push_gaps_filled",
        "Task versions sent from the database because the channel layer lost or reordered them.",
        value=totals["gaps_filled"],
    )
    yield CounterMetricFamily(
        "taskstore_push_slow_consumer_closes",
        "Sockets closed because they stopped reading while frames piled up.",
        value=totals["slow_consumer_closes"],
    )


def authorised(request: HttpRequest) -> bool:
    """An active staff session, or the configured bearer token."""
    if Viewer.of(getattr(request, "user", None)).staff:
        return True
    token = conf.metrics_token()
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer ") :].encode(), str(token).encode())
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: every metric, for staff or the scraper's token; 403 for anyone else."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse("Use GET.\n", status=405, content_type="text/plain", headers={"Allow": "GET"})
    if not authorised(request):
        response = HttpResponse(
            "Log in as staff, or send Authorization: Bearer <TASKSTORE_METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())  # type: ignore[arg-type]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
