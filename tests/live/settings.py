"""Settings for a daphne whose periodic subscription check runs every half second."""

from realtime.settings import *  # noqa: F403

TASKSTORE_RECONCILE_INTERVAL = 0.5
