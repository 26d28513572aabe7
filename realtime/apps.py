"""The realtime project as an app: its templates, static files and commands."""

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The example project."""

    name = "realtime"
    verbose_name = "Realtime demo"
