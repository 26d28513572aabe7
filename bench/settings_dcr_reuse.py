"""Bench experiment: (b) with Celery's Django fixup keeping database connections across tasks.

By default the fixup closes every connection before and after each task, so each task opens a
new one; ``CELERY_DB_REUSE_MAX`` lets a connection serve that many tasks first.
"""

from bench.settings_dcr import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
