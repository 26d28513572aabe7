"""Bench-only channel layer that accepts every message and sends none of them.

Running the taskstore configuration against it, and against Redis, isolates what publishing
each recorded transition costs the worker.
"""

from __future__ import annotations

from typing import Any

from channels.layers import BaseChannelLayer


class DiscardingChannelLayer(BaseChannelLayer):
    """A channel layer whose sends return at once and go nowhere."""

    extensions = ["groups"]

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Drop ``message``."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Drop ``message``."""

    async def group_add(self, group: str, channel: str) -> None:
        """Remember nothing."""

    async def group_discard(self, group: str, channel: str) -> None:
        """Forget nothing."""

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a name nobody will ever send to."""
        return f"{prefix}discarded!"

    async def receive(self, channel: str) -> dict[str, Any]:
        """Nothing is ever delivered."""
        raise NotImplementedError("The discarding channel layer delivers nothing.")
