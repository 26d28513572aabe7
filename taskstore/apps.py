"""App configuration: connects the Celery signal handlers when Django is ready."""

from django.apps import AppConfig


class TaskstoreConfig(AppConfig):
    """The taskstore Django app."""

    name = "taskstore"
    verbose_name = "Task results"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the Celery signal handlers and register the system checks."""
        from taskstore import checks, signals  # noqa: F401

        signals.connect()
        from taskstore import sessions  # noqa: F401  (its receivers end sockets of ended sessions)
