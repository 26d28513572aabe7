"""Bench configuration (a): plain Celery, results ignored, taskstore not installed."""

from realtime.settings import *  # noqa: F403
from realtime.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "taskstore"] + ["bench.counter.CounterConfig"]
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("taskstore.")]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# The project URLs include taskstore views, which need taskstore installed.
ROOT_URLCONF = "bench.urls"
