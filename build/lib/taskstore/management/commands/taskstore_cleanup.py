"""``manage.py taskstore_cleanup``: delete finished tasks older than the retention period."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskstore.retention import delete_expired


class Command(BaseCommand):
    """Delete expired tasks and their events, in batches."""

    help = "Delete tasks that finished more than TASKSTORE_RESULT_EXPIRES seconds ago."

    def add_arguments(self, parser: CommandParser) -> None:
        """Define --older-than and --batch-size."""
        parser.add_argument("--older-than", type=float, help="Seconds (default: the setting).")
        parser.add_argument("--batch-size", type=int, help="Rows per delete (default: the setting).")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the cleanup and say how many tasks went."""
        older = options.get("older_than")
        batch = options.get("batch_size")
        if older is not None and older < 0:
            raise CommandError("--older-than must be zero or more seconds.")
        if batch is not None and batch < 1:
            raise CommandError("--batch-size must be at least 1.")
        count = delete_expired(expires=older, batch_size=batch)
        self.stdout.write(f"Deleted {count} expired task(s).")
