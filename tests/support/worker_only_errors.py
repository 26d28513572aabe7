"""An exception only the worker imports (no test imports this module): the process reading the
result cannot rebuild its class, and Celery's rule for that applies."""


class LedgerLocked(Exception):
    """Raised by ``tests.raise_from_worker_only_module``."""
