"""What differs between the Python versions taskstore supports (3.10 and later)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # asyncio.timeout arrived in 3.11; async-timeout is the same API before it.
    from async_timeout import timeout

__all__ = ["timeout"]
