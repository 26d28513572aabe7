"""Settings for a daphne whose sockets may hold 32 KiB of unsent frames (a slow client is closed
sooner) and whose periodic subscription check runs every half second."""

from realtime.settings import *  # noqa: F403

TASKSTORE_SEND_BUFFER_BYTES = 32 * 1024
TASKSTORE_RECONCILE_INTERVAL = 0.5
