"""Marker sets shared by the integration tests."""

from typing import Any

import pytest

# Real PostgreSQL and Redis, real service processes, rows committed so those processes see them.
REAL_SERVICES = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# The same, driven through Chromium.
IN_BROWSER = [pytest.mark.browser, *REAL_SERVICES]


def real_services(test: Any) -> Any:
    """Put the ``REAL_SERVICES`` marks on one test, in a module whose other tests need none."""
    for mark in REAL_SERVICES:
        test = mark(test)
    return test
