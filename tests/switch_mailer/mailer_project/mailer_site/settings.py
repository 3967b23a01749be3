"""The project after the switch: post_office instead of django-mailer, as docs/migrating.rst says.

django-mailer is not installed here; its tables stay in the database until imported.
MAILER_SWITCH_SMTP_PORT: deliver over SMTP to 127.0.0.1 on this port.
MAILER_SWITCH_MEDIA_ROOT: where attachments are stored.
"""

import os

from .common import *  # noqa: F403

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "post_office"]
EMAIL_BACKEND = "post_office.EmailBackend"
# One delivery thread: mail arrives in sending order (highest priority first), which the test checks.
POST_OFFICE = {"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"}, "THREADS_PER_PROCESS": 1}
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("MAILER_SWITCH_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 10
MEDIA_ROOT = os.environ.get("MAILER_SWITCH_MEDIA_ROOT", os.path.join(os.path.dirname(__file__), "media"))
