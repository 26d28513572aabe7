"""The example project's settings with Celery's Redis result backend and a default queue of their
own: the reference worker the conformance tests hold taskstore's backend against."""

import os

from realtime.settings import *  # noqa: F403

CELERY_RESULT_BACKEND = os.environ["TASKSTORE_TEST_RESULT_BACKEND"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["TASKSTORE_TEST_DEFAULT_QUEUE"]
