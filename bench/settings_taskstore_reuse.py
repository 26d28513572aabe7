"""Bench experiment: (c) with Celery's Django fixup keeping database connections across tasks.

See bench/settings_dcr_reuse.py.
"""

from bench.settings_taskstore import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
