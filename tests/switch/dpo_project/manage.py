#!/usr/bin/env python
"""The switch tests' project: the same files run with django-post_office (.venv-dpo) and with this package (.venv)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
