"""Django signals taskstore sends, for a project's own code (metrics, audit, tests)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the commit of each recorded transition, when its document goes to the channel
# layer; ``document`` is the whole task document (staff fields and ``owner_id`` included).
# Receivers run in the process that recorded it (a worker, a web process): keep them quick.
task_recorded = Signal()
