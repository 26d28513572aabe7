"""Errors a client frame can cause; each becomes one ``error`` frame and the socket stays open."""

from __future__ import annotations

from taskstore.consumers import codes


class ProtocolError(Exception):
    """A client frame the server will not act on."""

    code = codes.BAD_REQUEST

    def __init__(self, detail: str, **ids: str) -> None:
        super().__init__(detail)
        self.detail = detail
        # task_id or group_id of the frame, echoed so a client knows which subscription failed.
        self.ids = {k: v for k, v in ids.items() if isinstance(v, str)}


class BadRequest(ProtocolError):
    """Not JSON, not an object, an unknown type, a malformed id, or a field of the wrong type."""

    code = codes.BAD_REQUEST


class Forbidden(ProtocolError):
    """The viewer may not see this task or group, or the id is unknown (the same answer)."""

    code = codes.FORBIDDEN


class TooManySubscriptions(ProtocolError):
    """The socket already holds TASKSTORE_MAX_SUBSCRIPTIONS subscriptions."""

    code = codes.TOO_MANY_SUBSCRIPTIONS


class RateLimited(ProtocolError):
    """The client sends frames faster than TASKSTORE_RATE_LIMIT allows."""

    code = codes.RATE_LIMITED


class Conflict(ProtocolError):
    """A control action that does not apply to its target now."""

    code = codes.CONFLICT


class Unavailable(ProtocolError):
    """The broker could not be reached for a control action."""

    code = codes.UNAVAILABLE
