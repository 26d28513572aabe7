"""App configuration: checks the settings, connects the Celery signal handlers when Django is ready."""

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class TaskstoreConfig(AppConfig):
    """The taskstore Django app."""

    name = "taskstore"
    verbose_name = "Task results"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Refuse bad settings, register the system checks, connect the signal handlers."""
        from celery.signals import beat_init

        from taskstore import checks, conf, layers, schedule, signals  # noqa: F401

        problems = conf.problems()
        if problems:
            raise ImproperlyConfigured(" ".join(problems))
        # A safe default the project need not know about (taskstore.layers).
        layers.fill_read_timeouts(getattr(settings, "CHANNEL_LAYERS", None) or {})
        signals.connect()
        beat_init.connect(schedule.add_cleanup_entry, weak=False, dispatch_uid="taskstore-cleanup")
        from taskstore import sessions  # noqa: F401  (its receivers end sockets of ended sessions)
        from taskstore.operations import heartbeat

        heartbeat.connect()
