"""Bench-only app: taskstore pushes nothing, in every process of the configuration.

Configuration (c-nopush) of ``bench/worker_overhead.py`` installs it to show what the worker
and the producer cost without the push: each transition is still recorded, but nothing is handed
to the sending thread (configuration (c0) still hands every transition over, to a channel layer
that discards it).
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class NoPushConfig(AppConfig):
    """Replaces the publisher's ``publish`` with one that drops its messages."""

    name = "bench.no_push"
    label = "bench_no_push"
    verbose_name = "Bench: no push"

    def ready(self) -> None:
        """Drop every batch handed to the publisher, before it reaches the sending thread."""
        from taskstore.publisher import Publisher

        def publish_nothing(self: Publisher, messages: Any) -> None:
            return None

        Publisher.publish = publish_nothing  # type: ignore[method-assign]
