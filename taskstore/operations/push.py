"""Pushing operations documents on the staff feed, after the commit that recorded them."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from taskstore import addressing
from taskstore.publisher import publisher

# Channel-layer message types (handled by taskstore.consumers.operations).
MESSAGE_WORKER = "taskstore.worker"
MESSAGE_QUEUE = "taskstore.queue"
MESSAGE_ACTION = "taskstore.action"


def on_commit(kind: str, document: dict[str, Any]) -> None:
    """Publish ``document`` to the staff feed once the current transaction commits."""
    message = {"type": kind, "document": document}
    transaction.on_commit(partial(publisher.publish, [(addressing.FEED_STAFF, message)]), robust=True)
