"""Test settings: the project's settings on the test services (see tests/services.py)."""

import os

from tests import services

os.environ["DJANGO_SECRET_KEY"] = services.SECRET_KEY
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

import dj_database_url
import django

from realtime.settings import *  # noqa: F403
from taskstore.layers import redis_host

DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
TASKSTORE_ANONYMOUS_SUBMIT = False

if services.postgres_problem() is None:
    DATABASES = {"default": dj_database_url.parse(services.DATABASE_URL)}
    # As the example project: taskstore's statements are prepared (taskstore.prepared).
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 5}
    # TASKSTORE_TEST_DB lets two suites run side by side on one server.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TASKSTORE_TEST_DB", "test_taskstore")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "tests.sqlite3"),  # noqa: F405
            # transaction_mode arrived in Django 5.1 (see realtime/settings.py).
            "OPTIONS": {
                "timeout": 30,
                **({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}),
            },
            "TEST": {"NAME": str(VAR_DIR / "test-tests.sqlite3")},  # noqa: F405
        }
    }

if services.redis_problem() is None:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_host(services.REDIS_URL)]},
        }
    }
    CELERY_BROKER_URL = services.REDIS_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
