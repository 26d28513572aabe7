"""Tasks only the test worker loads (``--include``): misbehaviour the examples don't show."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tests.unencodable")
def unencodable() -> object:
    """Return a value JSON cannot encode."""
    return object()
