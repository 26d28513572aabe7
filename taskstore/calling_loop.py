"""The event loop waiting on this thread, for sync code that asgiref's ``sync_to_async`` runs (a
view under an ASGI server, ``database_sync_to_async`` in a consumer, a test's ``sync_to_async``).

asgiref has no public way to ask this (its maintainer on the question: django/asgiref#197).
``SyncToAsync`` keeps the loop, with the process id, in a thread-local for its own
``async_to_sync`` (``SyncToAsync.threadlocal.main_event_loop``). The public ``async_to_sync``
would find the same loop, but only by a blocking round trip to it, and in a thread that no
``sync_to_async`` started it builds an event loop of its own on every call. This module is the one
place that reads the thread-local; tests/test_library_internals.py fails if asgiref changes it.
Without it (None) the publisher sends from the loop an ASGI server bound
(taskstore.asgi.BindPublisherLoop) or from a thread of its own.
"""

from __future__ import annotations

import asyncio
import os

from asgiref.sync import SyncToAsync


def calling_loop() -> asyncio.AbstractEventLoop | None:
    """The loop of the coroutine that called this thread's sync code through ``sync_to_async``,
    or None (another thread, another process's loop, or an asgiref that keeps it elsewhere)."""
    local = getattr(SyncToAsync, "threadlocal", None)
    loop = getattr(local, "main_event_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return None
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None  # a forked child inherits the thread-local, not the loop's thread
    return loop
