"""Exceptions in the two forms taskstore keeps.

- The task document's ``error``: ``{"type": …, "message": …}``, for REST and WebSocket clients.
- Celery's serialised exception: ``{"exc_type", "exc_module", "exc_message"}`` with the
  arguments as a list, the form Celery's own backends store, from which Celery's
  ``exception_to_python`` rebuilds the original class with its original arguments.
"""

from __future__ import annotations

import json
from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]  # not in celery-types
from celery.utils.serialization import UnpickleableExceptionWrapper, ensure_serializable


def _original(exc: BaseException) -> BaseException:
    # A prefork pool child hands the parent its exception wrapped with the traceback text
    # (billiard, Celery's pool, defines the wrapper; Celery itself imports it from there). The
    # original is what users raised.
    return exc.exc if isinstance(exc, ExceptionWithTraceback) else exc


def error_from_exception(exc: BaseException | None) -> dict[str, str] | None:
    """Return ``{"type": …, "message": …}`` for ``exc``."""
    if exc is None:
        return None
    exc = _original(exc)
    if isinstance(exc, UnpickleableExceptionWrapper):
        # Celery stands this in for an exception pickle cannot carry; name the one raised.
        return {"type": str(exc.exc_cls_name), "message": _message(exc.exc_args)}
    return {"type": type(exc).__name__, "message": str(exc)}


def error_from_celery(value: Any) -> dict[str, str] | None:
    """Return the error for a value Celery handed a result backend for an exception state."""
    if value is None:
        return None
    if isinstance(value, BaseException):
        return error_from_exception(value)
    if isinstance(value, dict) and "exc_type" in value:
        return {
            "type": str(value["exc_type"]).rsplit(".", 1)[-1],
            "message": _message(value.get("exc_message")),
        }
    return {"type": "Exception", "message": str(value)}


def _message(arguments: Any) -> str:
    """What ``str()`` of an exception built with ``arguments`` says (BaseException's rule)."""
    if not isinstance(arguments, (list, tuple)):
        return "" if arguments is None else str(arguments)
    if len(arguments) == 0:
        return ""
    if len(arguments) == 1:
        return str(arguments[0])
    return str(tuple(arguments))


def serialize_exception(exc: BaseException) -> dict[str, Any]:
    """Celery's serialised form of ``exc``: type, module and arguments.

    As Celery's ``prepare_exception`` for a non-pickle serializer, except that each argument must
    be plain JSON: one that is not is kept as its ``repr`` (Celery's rule for arguments its
    serializer cannot encode).
    """
    cls = type(exc)
    return {
        "exc_type": getattr(cls, "__qualname__", cls.__name__),
        "exc_message": list(ensure_serializable(list(exc.args), json.dumps)),
        "exc_module": cls.__module__,
    }
