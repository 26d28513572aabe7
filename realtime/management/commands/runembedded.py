"""``manage.py runembedded``: the whole service in one process, with nothing else installed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.embedded import EmbeddedWorker
from taskstore import conf


class Command(BaseCommand):
    """Migrate, start a Celery worker in-process, then serve HTTP and WebSockets with daphne."""

    help = "Run the embedded default: SQLite, in-memory channel layer, in-process Celery worker."

    def add_arguments(self, parser: CommandParser) -> None:
        """Define --port, --host and --concurrency."""
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--concurrency", type=int, default=4)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run until interrupted."""
        if not settings.EMBEDDED:
            raise CommandError(
                "REDIS_URL is set: run daphne and `celery -A realtime worker` instead (./scripts/run does)."
            )
        port = options["port"]
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a TCP port.")
        call_command("migrate", interactive=False, verbosity=0)
        worker = EmbeddedWorker(concurrency=options["concurrency"])
        worker.start()
        db = settings.DATABASES["default"]["NAME"]
        anonymous = "on" if conf.anonymous_submit() else "off"
        debug = "on" if settings.DEBUG else "off"
        self.stdout.write(
            f"Embedded default: SQLite at {db}, in-memory channel layer, in-process Celery worker.\n"
            f"DEBUG is {debug} and anonymous task submission is {anonymous}: "
            "this is a development server.\n"
            f"Open http://{options['host']}:{port}/ in a browser."
        )
        self.stdout.flush()  # say where before the server takes over, even when piped
        try:
            call_command("runserver", f"{options['host']}:{port}", use_reloader=False, skip_checks=True)
        finally:
            worker.stop()
