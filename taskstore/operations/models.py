"""The tables of the operations console (imported by :mod:`taskstore.models`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class WorkerRecord(models.Model):
    """One Celery worker (by host name) as it last reported itself."""

    ONLINE = "online"
    OFFLINE = "offline"
    LOST = "lost"
    STATUSES = [(ONLINE, "online"), (OFFLINE, "offline"), (LOST, "lost")]

    hostname = models.CharField(max_length=255, primary_key=True, help_text="celery@host")
    status = models.CharField(max_length=16, choices=STATUSES, default=ONLINE)
    version = models.PositiveIntegerField(
        default=0, help_text="How many visible changes were recorded: 1, 2, 3, … with no gaps."
    )
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="The main process id.")
    pool = models.CharField(max_length=100, blank=True, default="")
    concurrency = models.PositiveIntegerField(null=True, blank=True)
    queues = models.JSONField(default=list, blank=True, help_text="Names of the queues it consumes.")
    broker_key = models.CharField(
        max_length=16, blank=True, default="", help_text="Its broker: a digest of the address."
    )
    software = models.JSONField(default=dict, blank=True, help_text="Versions: celery, kombu, python…")
    running = models.PositiveIntegerField(default=0, help_text="Tasks running now.")
    processed = models.PositiveIntegerField(default=0, help_text="Tasks finished since it started.")
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Finished other than SUCCESS.")
    counted_until = models.DateTimeField(help_text="Tasks finished up to here are counted.")
    started = models.DateTimeField(help_text="When this run of the worker came online.")
    last_heartbeat = models.DateTimeField()
    expires = models.DateTimeField(help_text="Lost when no heartbeat renews this in time.")
    stopped = models.DateTimeField(null=True, blank=True)
    date_updated = models.DateTimeField("updated")

    class Meta:
        verbose_name = "worker"
        verbose_name_plural = "workers"
        ordering = ["hostname"]
        indexes = [models.Index(fields=["status", "expires"], name="taskstore_worker_status_idx")]

    def __str__(self) -> str:
        return f"{self.hostname} [{self.status} v{self.version}]"


class QueueRecord(models.Model):
    """The depth of one broker queue, as the monitor last read it."""

    name = models.CharField(max_length=255, primary_key=True)
    depth = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Messages waiting; empty when the broker cannot tell."
    )
    broker = models.CharField(max_length=50, blank=True, default="", help_text="The transport.")
    broker_key = models.CharField(
        max_length=16,
        blank=True,
        default="",
        help_text="The broker it is read from: a digest of the address.",
    )
    version = models.PositiveIntegerField(default=0)
    date_updated = models.DateTimeField("updated")

    class Meta:
        verbose_name = "queue"
        verbose_name_plural = "queues"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {'unknown' if self.depth is None else self.depth}"


class ControlAction(models.Model):
    """One control action a staff user took (revoke, terminate, re-run, purge)."""

    action = models.CharField(max_length=20)
    target = models.CharField(max_length=255, help_text="A task id, or a queue name for purge.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="", help_text="Kept if the user goes.")
    ok = models.BooleanField(default=True, help_text="Whether it did what was asked.")
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField()

    class Meta:
        verbose_name = "control action"
        verbose_name_plural = "control actions"
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["-created"], name="taskstore_action_created_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.username or '?'}"


class TaskTally(models.Model):
    """Running totals per task name for /metrics, folded in by the monitor (never decreasing)."""

    task_name = models.CharField(max_length=255, primary_key=True)
    sent = models.PositiveBigIntegerField(default=0)
    states = models.JSONField(default=dict, help_text="Finished tasks by terminal state.")
    retries = models.PositiveBigIntegerField(default=0)
    runtime = models.JSONField(default=dict, help_text="Histogram: bucket counts, sum, count.")
    wait = models.JSONField(default=dict, help_text="Histogram of PENDING → STARTED.")
    cursor = models.JSONField(
        null=True, blank=True, help_text="On the one bookkeeping row: where the fold got to."
    )

    class Meta:
        verbose_name = "task tally"
        verbose_name_plural = "task tallies"
        ordering = ["task_name"]

    def __str__(self) -> str:
        return self.task_name


class Lease(models.Model):
    """Who does a once-per-deployment job now (the monitor of each broker)."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=255, blank=True, default="")
    expires = models.DateTimeField()

    class Meta:
        verbose_name = "lease"
        verbose_name_plural = "leases"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.holder}"


class PushCounters(models.Model):
    """The push side of one server process: its open sockets and what it sent, flushed
    every monitor interval. Totals are sums over the rows (see taskstore.operations.pushstats)."""

    process = models.CharField(max_length=255, primary_key=True, help_text="host:pid:start")
    open_sockets = models.PositiveIntegerField(default=0)
    frames_sent = models.PositiveBigIntegerField(default=0)
    gaps_filled = models.PositiveBigIntegerField(default=0)
    slow_consumer_closes = models.PositiveBigIntegerField(default=0)
    seen = models.DateTimeField(help_text="The last flush; open sockets count while recent.")

    class Meta:
        verbose_name = "push counters"
        verbose_name_plural = "push counters"
        ordering = ["process"]

    def __str__(self) -> str:
        return self.process
