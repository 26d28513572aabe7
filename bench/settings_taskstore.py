"""Bench configuration (c): the project's default settings, plus the bench counter."""

from realtime.settings import *  # noqa: F403
from realtime.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.counter.CounterConfig"]
