"""The embedded Celery worker: a real worker in a thread of the web process (memory transport)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.worker import WorkController

from realtime.celery import app

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """Runs a Celery ``WorkController`` with a thread pool in a background thread."""

    def __init__(self, concurrency: int = 4) -> None:
        self.concurrency = concurrency
        self.controller: WorkController | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        """Start the worker and wait until it consumes."""
        self.controller = _Controller(
            app=app,
            pool_cls="threads",
            concurrency=self.concurrency,
            loglevel="INFO",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@localhost",
            ready_event=self.ready,
        )
        self.thread = threading.Thread(target=self.controller.start, name="celery-embedded", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout=30):
            raise RuntimeError("The embedded Celery worker did not start within 30 seconds.")

    def stop(self) -> None:
        """Stop the worker, letting running tasks finish."""
        if self.controller is not None:
            self.controller.stop(in_sighandler=False)
        if self.thread is not None:
            self.thread.join(timeout=10)


class _Controller(WorkController):
    def __init__(self, *args: Any, ready_event: threading.Event, **kwargs: Any) -> None:
        self._ready_event = ready_event
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self._ready_event.set()
