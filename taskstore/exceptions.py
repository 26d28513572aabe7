"""The exceptions taskstore raises to code that uses it.

The WebSocket protocol's errors are in :mod:`taskstore.consumers.errors`, the operations
console's in :mod:`taskstore.operations.exceptions`. :mod:`taskstore.failures` is about the
exceptions of tasks: how a task's failure is kept and shown.
"""

from __future__ import annotations


class NoChannelLayer(RuntimeError):
    """CHANNEL_LAYERS names no default layer, so there is nothing to wait on (``taskstore.wait``)."""
