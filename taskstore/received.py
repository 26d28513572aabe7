"""RECEIVED, recorded off the worker's main loop, a moment late.

A worker's main process takes messages off the queue and hands them to the pool; a database round
trip there for each message (RECEIVED) halved its rate (docs/benchmarks.md, "Worker overhead").
Instead the ``task_received`` handler queues the transition and returns, and one background
thread per process records what has queued, many tasks in one statement
(:func:`taskstore.recorder.record_many`).

Each RECEIVED waits ``TASKSTORE_RECEIVED_LINGER`` first. Most tasks start sooner: the pool
child then writes RECEIVED with STARTED, and with the end when that follows within the STARTED
linger, in one statement (taskstore.linger, taskstore.recorder), and the writer's copy is refused
as a duplicate, costing neither a version nor a push. A task still waiting for a pool process
shows RECEIVED after the linger.

Nothing is lost or reordered by the delay. A pool child's STARTED is written only once RECEIVED
is (``Transition.requires``); when the child gets there first it records RECEIVED itself. A
transition this process records for a task whose RECEIVED is still queued (a revoke, a killed
child's failure) writes that RECEIVED first (:meth:`ReceivedWriter.take`). A RECEIVED still
queued when the process dies is recorded by the child that runs the task, or by the worker the
message is redelivered to.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from django.db import connection

from taskstore import conf

if TYPE_CHECKING:
    from taskstore.recorder import Transition

logger = logging.getLogger(__name__)

# Tasks in one statement at most.
MAX_BATCH = 500
# Transitions waiting at most; past it the oldest are dropped (the children record them).
MAX_QUEUED = 50_000
# An idle writer closes its database connection after this long (a test database can then be
# dropped; a quiet worker holds no connection for it).
IDLE_CLOSE_SECONDS = 5.0


class ReceivedWriter:
    """Records queued RECEIVED transitions from a thread of its own, in batches, each once its
    linger has passed."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # By task id, in the order they came (so in the order they fall due): the transition and
        # when it is due.
        self._queue: dict[str, tuple[Transition, float]] = {}
        self._writing = 0
        self._flushing = 0
        # Held while a batch is written, so take() cannot return before a RECEIVED already on its
        # way is in (re-entrant: on SQLite the batch goes through record(), which asks take()).
        self._batch = threading.RLock()
        self._thread: threading.Thread | None = None

    def put(self, transition: Transition, linger: float | None = None) -> None:
        """Queue ``transition`` for the writer thread, due after ``linger`` seconds
        (TASKSTORE_RECEIVED_LINGER by default); returns at once."""
        if self._pid != os.getpid():  # a forked process does not have the parent's thread
            self._reset()
        due = time.monotonic() + (conf.received_linger() if linger is None else linger)
        with self._changed:
            was_empty = not self._queue
            self._queue.setdefault(transition.task_id, (transition, due))
            if len(self._queue) > MAX_QUEUED:
                del self._queue[next(iter(self._queue))]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskstore-received", daemon=True)
                self._thread.start()
            # The writer sleeps until the first queued transition is due, and this one falls due
            # after it: wake it only if it was waiting for anything at all (one wake per batch,
            # not per message, on the worker's busiest thread).
            if was_empty:
                self._changed.notify_all()

    def take(self, task_id: str) -> Transition | None:
        """Take back the RECEIVED queued for ``task_id``, if any: the caller records it now, before
        the transition it is recording.

        If the writer is recording it at this moment, wait until it is recorded (and return None).
        """
        if self._pid != os.getpid() or (not self._queue and not self._writing):
            return None
        with self._batch, self._changed:
            entry = self._queue.pop(task_id, None)
        return entry[0] if entry is not None else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Record everything queued so far now, lingering or not; False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: not self._queue and not self._writing, timeout=timeout)
            finally:
                self._flushing -= 1

    def _due(self) -> list[Transition]:
        """Take the batch to write now (under the lock), in order: what is due, and what falls due
        within half a linger (so one statement serves many tasks: each waited half its linger at
        least); everything while a flush waits."""
        until = time.monotonic() + conf.received_linger() / 2
        batch: list[Transition] = []
        for task_id, (transition, due) in list(self._queue.items())[:MAX_BATCH]:
            if due > until and not self._flushing:
                break
            batch.append(transition)
            del self._queue[task_id]
        return batch

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: bool(self._queue), timeout=IDLE_CLOSE_SECONDS):
                    connection.close()
                    continue
                first_due = next(iter(self._queue.values()))[1]
                wait = first_due - time.monotonic()
                if wait > 0 and not self._flushing:
                    self._changed.wait(timeout=wait)
                    continue
            with self._batch:
                with self._changed:
                    # Marked as writing before the batch leaves the queue, so take()'s unlocked
                    # look sees it in one or the other.
                    self._writing = 1
                    batch = self._due()
                    self._writing = len(batch)
                try:
                    if batch:
                        _record(batch)
                except Exception:
                    # The children record RECEIVED as they start these tasks (a task that waits
                    # for its ETA shows RECEIVED once it runs).
                    logger.exception("Could not record RECEIVED for %d tasks", len(batch))
                finally:
                    with self._changed:
                        self._writing = 0
                        self._changed.notify_all()


def _record(batch: list[Transition]) -> None:
    from taskstore.recorder import record_many

    record_many(batch)


writer = ReceivedWriter()


@atexit.register
def _flush_at_exit() -> None:
    writer.flush(timeout=5.0)
