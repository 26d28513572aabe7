"""Settings for the realtime project, read from the environment.

With no ``REDIS_URL`` the project runs the *embedded default*: SQLite, an in-memory channel
layer and an in-process Celery worker on the memory transport. With ``REDIS_URL`` set, Redis is
both the channel layer and the broker. Every variable is listed in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

from realtime.env import env_bool, env_float, env_int, env_list, env_str, env_url
from taskstore.layers import redis_channel_layer, redis_pubsub_channel_layer

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TASKSTORE_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string "
            "(or set DJANGO_DEBUG=1 for a development run)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "taskstore",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "taskstore.middleware.TaskOwnerMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "realtime.urls"
ASGI_APPLICATION = "realtime.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, else a SQLite file in WAL mode --------------------------------
_database_url = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite", "pgsql"))
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "db.sqlite3")}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
    # WAL lets readers (the WebSocket consumers) run while a worker writes; IMMEDIATE takes
    # the write lock at BEGIN so two writers queue instead of failing with "database is locked".
    # Both options arrived in Django 5.1; before it the recorder's retry covers a locked write.
    if django.VERSION >= (5, 1):
        DATABASES["default"]["OPTIONS"].update(
            init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", transaction_mode="IMMEDIATE"
        )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # psycopg prepares a statement it has run this many times on a connection: taskstore's
    # recorder statements then skip parsing and planning (taskstore.prepared). Django turns it
    # off by default for connection poolers; DATABASE_PREPARED_STATEMENTS=0 behind PgBouncer in
    # transaction mode.
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the channel layer and the broker, or the embedded default ------------------------
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
EMBEDDED = REDIS_URL is None
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 100, minimum=1)
# Which channels-redis layer: "core" (lists in Redis) or "pubsub" (Redis PUBLISH/SUBSCRIBE).
CHANNEL_LAYER = env_str("CHANNEL_LAYER", "core")
if CHANNEL_LAYER not in ("core", "pubsub"):
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be 'core' or 'pubsub', not {CHANNEL_LAYER!r}")
_LAYERS = {"core": redis_channel_layer, "pubsub": redis_pubsub_channel_layer}


if REDIS_URL:
    # taskstore.layers gives the hosts a read timeout that keeps idle sockets (redis-py #4091).
    CHANNEL_LAYERS = {"default": _LAYERS[CHANNEL_LAYER](REDIS_URL, capacity=CHANNEL_LAYER_CAPACITY)}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_LAYER_CAPACITY},
        }
    }

# --- Celery (CELERY_ namespace, read by realtime/celery.py) ---------------------------------
CELERY_BROKER_URL = (
    env_url("CELERY_BROKER_URL", ("redis", "rediss", "amqp", "amqps", "pyamqp", "memory"))
    or REDIS_URL
    or "memory://localhost/"
)
CELERY_RESULT_BACKEND = "taskstore.backend:DatabaseBackend"
# JSON only: no pickle on the wire or in the result store.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_EVENT_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600, minimum=1)
# Celery's Django fixup closes every database connection before and after each task unless this
# is set, so each recorded state would pay for a new connection. Reused connections that have
# gone stale are replaced by the recorder's retry.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_TIMEZONE = "UTC"
# No CELERY_BEAT_SCHEDULE needed: taskstore adds its cleanup when beat starts (taskstore.schedule).

# --- taskstore --------------------------------------------------------------------------------
TASKSTORE_SUBMITTABLE_TASKS = env_list(
    "TASKSTORE_SUBMITTABLE_TASKS",
    [
        "realtime.tasks.add",
        "realtime.tasks.progress",
        "realtime.tasks.fail",
        "realtime.tasks.sleep",
        "realtime.tasks.flaky",
    ],
)
TASKSTORE_ANONYMOUS_SUBMIT = env_bool("TASKSTORE_ANONYMOUS_SUBMIT", DEBUG)
TASKSTORE_CLEANUP_INTERVAL = env_int("TASKSTORE_CLEANUP_INTERVAL", 3600, minimum=0)
TASKSTORE_RESULT_EXPIRES = env_int("TASKSTORE_RESULT_EXPIRES", 7 * 24 * 3600, minimum=1)
# Seconds a worker holds a task's RECEIVED before writing it (docs/configuration.md).
TASKSTORE_RECEIVED_LINGER = env_float("TASKSTORE_RECEIVED_LINGER", 0.25, minimum=0)
# The operations console (docs/operations.md): heartbeat, lost-after and monitor seconds.
TASKSTORE_WORKER_HEARTBEAT = env_float("TASKSTORE_WORKER_HEARTBEAT", 5.0, minimum=0.1)
TASKSTORE_WORKER_LOST_AFTER = env_float("TASKSTORE_WORKER_LOST_AFTER", 30.0, minimum=0.5)
TASKSTORE_MONITOR_INTERVAL = env_float("TASKSTORE_MONITOR_INTERVAL", 5.0, minimum=0.1)
TASKSTORE_METRICS_TOKEN = env_str("TASKSTORE_METRICS_TOKEN")
TASKSTORE_WATCH_QUEUES = env_list("TASKSTORE_WATCH_QUEUES", [])
# Celery's own retention: beat's daily celery.backend_cleanup deletes through the result backend
# what finished this long ago. One retention for both.
CELERY_RESULT_EXPIRES = TASKSTORE_RESULT_EXPIRES

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders too, so a fresh checkout works without
# collectstatic; collectstatic (done by the scripts and the compose file) adds compression.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the demo page reads it to send X-CSRFToken

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
