"""RECEIVED, recorded off the worker's main loop.

A worker's main process takes messages off the queue and hands them to the pool; a database round
trip there for each message (RECEIVED) halved its rate (docs/benchmarks.md, "Worker overhead").
Instead the ``task_received`` handler queues the transition and returns, and one background
thread per process records what has queued, many tasks in one statement
(:func:`taskstore.recorder.record_many`): while it writes, the next batch gathers.

Nothing is lost by the delay. A pool child's STARTED is written only once RECEIVED is
(``Transition.requires``); when the child gets there first it records RECEIVED itself, and the
writer's copy is then refused as a duplicate. A RECEIVED still queued when the process dies is
recorded by the child that runs the task, or by the worker the message is redelivered to.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque

from django.db import connection

from taskstore.recorder import Transition, record_many

logger = logging.getLogger(__name__)

# Tasks in one statement at most.
MAX_BATCH = 500
# Transitions waiting at most; past it the oldest are dropped (the children record them).
MAX_QUEUED = 50_000
# An idle writer closes its database connection after this long (a test database can then be
# dropped; a quiet worker holds no connection for it).
IDLE_CLOSE_SECONDS = 5.0


class ReceivedWriter:
    """Records queued RECEIVED transitions from a thread of its own, in batches."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[Transition] = deque(maxlen=MAX_QUEUED)
        self._writing = 0
        self._thread: threading.Thread | None = None

    def put(self, transition: Transition) -> None:
        """Queue ``transition`` for the writer thread; returns at once."""
        if self._pid != os.getpid():  # a forked process does not have the parent's thread
            self._reset()
        with self._changed:
            self._queue.append(transition)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskstore-received", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is recorded (or given up); False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue and not self._writing, timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: bool(self._queue), timeout=IDLE_CLOSE_SECONDS):
                    connection.close()
                    continue
                count = min(len(self._queue), MAX_BATCH)
                batch = [self._queue.popleft() for _ in range(count)]
                self._writing = count
            try:
                record_many(batch)
            except Exception:
                # The children record RECEIVED as they start these tasks (a task that waits for
                # its ETA shows RECEIVED once it runs).
                logger.exception("Could not record RECEIVED for %d tasks", count)
            finally:
                with self._changed:
                    self._writing = 0
                    self._changed.notify_all()


writer = ReceivedWriter()


@atexit.register
def _flush_at_exit() -> None:
    writer.flush(timeout=5.0)
