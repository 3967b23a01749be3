"""The project before the switch: django-mailer queues mail (run under .venv-mailer's interpreter).

Its send loop delivers through mailer_site.backends.FlakyBackend, which fails for the domains the
fill script marks as down (so django-mailer defers those messages and logs the failures).
"""

from .common import *  # noqa: F403

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailer"]
EMAIL_BACKEND = "mailer.backend.DbBackend"
MAILER_EMAIL_BACKEND = "mailer_site.backends.FlakyBackend"
MAILER_USE_FILE_LOCK = False
