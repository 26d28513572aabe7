"""Turning exceptions (live, or as Celery serialised them) into the document's ``error``."""

from __future__ import annotations

from typing import Any


def error_from_exception(exc: BaseException | None) -> dict[str, str] | None:
    """Return ``{"type": …, "message": …}`` for ``exc``."""
    if exc is None:
        return None
    # Celery wraps some exceptions (ExceptionWithTraceback); the original is what users raised.
    exc = getattr(exc, "exc", exc) if type(exc).__name__ == "ExceptionWithTraceback" else exc
    return {"type": type(exc).__name__, "message": str(exc)}


def error_from_celery(value: Any) -> dict[str, str] | None:
    """Return the error for a value Celery handed a result backend for an exception state."""
    if value is None:
        return None
    if isinstance(value, BaseException):
        return error_from_exception(value)
    if isinstance(value, dict) and "exc_type" in value:
        message = value.get("exc_message", "")
        if isinstance(message, (list, tuple)):
            message = message[0] if len(message) == 1 else ", ".join(str(m) for m in message)
        return {"type": str(value["exc_type"]), "message": str(message)}
    return {"type": "Exception", "message": str(value)}
