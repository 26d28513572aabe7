"""The example project's settings with Celery's ``task_ignore_result`` on, for a worker of its own."""

from realtime.settings import *  # noqa: F403

CELERY_TASK_IGNORE_RESULT = True
