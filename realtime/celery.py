"""The Celery application: ``celery -A realtime worker``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

app = Celery("realtime")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
