"""The test settings as a real project runs the admin: static files served, CSRF checked, clickjacking headers."""

import os

from tests.smtp_sink import free_port

# The live server, the test sends and the worker subprocesses all deliver over SMTP to the tests'
# SMTPSink on this port (tests/settings.py reads it; BrowserTestCase starts the server on it).
os.environ.setdefault("POST_OFFICE_TEST_SMTP_PORT", str(free_port()))

from tests.settings import *  # noqa: E402, F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    *MIDDLEWARE[:1],  # sessions
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    *MIDDLEWARE[1:],  # auth, messages
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
STATIC_URL = "/static/"
USE_I18N = True
LANGUAGE_CODE = "en"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
