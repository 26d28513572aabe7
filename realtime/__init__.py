"""The Django project: settings, ASGI entry, URLs, the Celery app and the example tasks."""

from realtime.celery import app as celery_app

__all__ = ["celery_app"]
