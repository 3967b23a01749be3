#!/usr/bin/env python
"""The mailer project's manage.py: DJANGO_SETTINGS_MODULE picks django-mailer's settings or this package's."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
