"""A pool child's STARTED, held for a moment: most tasks end sooner, and then STARTED and the
final state are written in one statement, each still its own version and event.

``on_prerun`` hands STARTED to :data:`held`. The next write of that task in this process
(:func:`taskstore.recorder.record`) takes it back: with a final state it writes the pair at once;
with anything else (progress, a retry) it writes STARTED first. A task still running when
``TASKSTORE_STARTED_LINGER`` has passed gets its STARTED from a background thread, so a client
sees a long task start within the linger.

What the linger can cost: a child killed within the linger of the task's start (SIGKILL, a hard
time limit shorter than it) takes the held STARTED with it; the worker's main process still
records the FAILURE, so the final state is never lost.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING

from django.db import connection

if TYPE_CHECKING:
    from taskstore.recorder import Transition

logger = logging.getLogger(__name__)

# A background writer idle this long closes its database connection.
IDLE_CLOSE_SECONDS = 5.0
# While holds are coming, the background thread looks at them at least this far apart.
MIN_LOOK_SECONDS = 0.05


class HeldStarts:
    """The STARTED transitions this process holds, each until its deadline or its task's next
    write, whichever comes first."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._held: dict[str, tuple[Transition, float]] = {}
        # How many taken out of _held that the background thread is writing now. Counted before
        # they leave _held, so take()'s unlocked look sees them in one or the other.
        self._in_flight = 0
        # Serialises a background write of a held STARTED with its task's own next write
        # (re-entrant: the background write goes through record(), which asks take()).
        self._writing = threading.RLock()
        self._thread: threading.Thread | None = None
        # When the background thread looks next by itself (inf: only when woken), and when the
        # last hold came, with what linger.
        self._wakes_at = math.inf
        self._last_hold = 0.0
        self._linger = 0.0

    def hold(self, started: Transition, linger: float) -> None:
        """Hold ``started`` for at most ``linger`` seconds."""
        if self._pid != os.getpid():  # a forked process does not have the parent's thread
            self._reset()
        now = time.monotonic()
        with self._changed:
            self._held[started.task_id] = (started, now + linger)
            self._last_hold, self._linger = now, linger
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskstore-started", daemon=True)
                self._thread.start()
            # A busy pool process holds a STARTED for every task and most are taken back within
            # the linger: waking the thread each time cost the process a thread switch per task.
            # It needs waking only if it would look later than this one falls due.
            if now + linger < self._wakes_at:
                self._changed.notify_all()

    def take(self, task_id: str) -> Transition | None:
        """Take back the STARTED held for ``task_id``, if any: the caller writes it now.

        If the background thread is writing it at this moment, wait until it is written (and
        return None): the caller's own write comes after it.
        """
        if self._pid != os.getpid() or (not self._held and not self._in_flight):
            return None
        with self._writing, self._changed:
            entry = self._held.pop(task_id, None)
        return entry[0] if entry is not None else None

    def release_all(self) -> None:
        """Write every held STARTED now (the process is about to exit)."""
        if self._pid != os.getpid():
            return
        with self._writing:
            with self._changed:
                due = [started for started, _ in self._held.values()]
                self._in_flight = len(due)
                self._held.clear()
            self._write_counted(due)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._held:
                    now = time.monotonic()
                    if now - self._last_hold < IDLE_CLOSE_SECONDS:
                        # Holds are coming: look again in a linger (not in a busy loop for a
                        # tiny one; a hold due sooner than the look wakes it).
                        self._wait_until(now + max(self._linger, MIN_LOOK_SECONDS))
                        continue
                    connection.close()  # none for a while: wait for the next, without it
                    self._wait_until(math.inf)
                    continue
                wake = min(deadline for _, deadline in self._held.values())
                if wake > time.monotonic():
                    self._wait_until(wake)
                    continue
            with self._writing:
                with self._changed:
                    now = time.monotonic()
                    due = [started for started, deadline in self._held.values() if deadline <= now]
                    self._in_flight = len(due)
                    for started in due:
                        del self._held[started.task_id]
                self._write_counted(due)

    def _wait_until(self, moment: float) -> None:
        # Under the lock, in the background thread: sleep until ``moment`` or a hold due sooner.
        self._wakes_at = moment
        try:
            self._changed.wait(timeout=None if moment == math.inf else max(0.0, moment - time.monotonic()))
        finally:
            self._wakes_at = math.inf

    def _write_counted(self, due: list[Transition]) -> None:
        try:
            self._write(due)
        finally:
            with self._changed:
                self._in_flight = 0

    @staticmethod
    def _write(due: list[Transition]) -> None:
        from taskstore.recorder import record_started

        for started in due:
            try:
                record_started(started)
            except Exception:
                logger.exception("Could not record STARTED for task %s", started.task_id)


held = HeldStarts()
