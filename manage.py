#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    # Load the settings now, so a bad environment value fails naming its variable: Django
    # defers that error, and on 4.2 a system check can trip first ("Models aren't loaded yet").
    settings.INSTALLED_APPS  # noqa: B018

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
