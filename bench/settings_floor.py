"""Bench configuration (d): plain Celery, results ignored, plus one durable row write per state
(bench/durable_floor.py): the ceiling of any durable store's throughput."""

from bench.settings_plain import *  # noqa: F403
from bench.settings_plain import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.durable_floor.DurableFloorConfig"]
