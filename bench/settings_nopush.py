"""Bench configuration (c-nopush): as (c), but taskstore pushes nothing (bench/no_push.py)."""

from bench.settings_taskstore import *  # noqa: F403
from bench.settings_taskstore import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.no_push.NoPushConfig"]
