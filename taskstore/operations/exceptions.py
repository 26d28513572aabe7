"""What the operations console's actions and reads refuse, each answered with its own status."""

from __future__ import annotations


class BadAction(ValueError):
    """A request for an action that is malformed: answered 400 / ``bad_request``."""


class ActionRefused(ValueError):
    """An action that does not apply to its target now (a finished task cannot be terminated):
    answered 409 / ``conflict``."""


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached: answered 503 / ``unavailable``."""


class UnknownWindow(ValueError):
    """A statistics window name that is not one of ``statistics.WINDOWS``: answered 400."""


class UnknownQueue(ValueError):
    """A queue name nobody consumes or configures: answered 400 / ``bad_request``."""
