"""Settings for the example project (``make run``) and the demo (``make demo``).

Environment variables let the demo reuse these settings unchanged:

- ``DEMO_DB_PATH``: the SQLite file (default ``example/demo.sqlite3``, the one ``make demo``
  fills, so ``make run`` shows the demo's mail in the admin).
- ``DEMO_MEDIA_ROOT``: where attachment files are stored (default ``example/demo_media``).
- ``DEMO_ATTACHMENT_DIR``: the one directory attachments may be read from by
  path (default ``example/reports``).
- ``DEMO_SMTP_PORT``: deliver over SMTP to 127.0.0.1 on this port. Without it,
  ``send_queued_mail`` prints delivered mail to the console, so the example
  project never sends real email by accident.
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "example-project-not-secret"  # a local demo only: never deploy these settings
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "German")]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "post_office",
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB_PATH") or str(BASE_DIR / "demo.sqlite3"),
        # Several workers on SQLite: take the write lock when a transaction begins.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

STATIC_URL = "static/"
MEDIA_URL = "media/"
MEDIA_ROOT = os.environ.get("DEMO_MEDIA_ROOT") or str(BASE_DIR / "demo_media")

DEFAULT_FROM_EMAIL = "Example Shop <shop@example.com>"
SERVER_EMAIL = "server@example.com"

_SMTP_PORT = os.environ.get("DEMO_SMTP_PORT")
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"

POST_OFFICE = {
    "BATCH_SIZE": 100,
    "THREADS_PER_PROCESS": 5,
    "LOG_LEVEL": 2,
    "MAX_RETRIES": 2,
    "MESSAGE_ID_ENABLED": True,
    "MESSAGE_ID_FQDN": "example.com",
    # Attachments given as paths are read only from these directories.
    "ATTACHMENT_DIRS": [os.environ.get("DEMO_ATTACHMENT_DIR") or str(BASE_DIR / "reports")],
}

if django.VERSION >= (6, 1):
    # Django 6.1: the queue is the default mailer; it delivers through the
    # "delivery" mailer. EMAIL_* settings must not be set alongside MAILERS.
    if _SMTP_PORT:
        _delivery = {
            "BACKEND": SMTP_BACKEND,
            "OPTIONS": {
                "host": "127.0.0.1",
                "port": int(_SMTP_PORT),
                "use_tls": False,
                "use_ssl": False,
                "timeout": 10,
            },
        }
    else:
        _delivery = {"BACKEND": CONSOLE_BACKEND}
    MAILERS = {"default": {"BACKEND": "post_office.EmailBackend"}, "delivery": _delivery}
    POST_OFFICE["BACKENDS"] = {"default": "delivery"}
else:
    EMAIL_BACKEND = "post_office.EmailBackend"
    if _SMTP_PORT:
        EMAIL_HOST = "127.0.0.1"
        EMAIL_PORT = int(_SMTP_PORT)
        EMAIL_USE_TLS = False
        EMAIL_USE_SSL = False
        EMAIL_TIMEOUT = 10
        POST_OFFICE["BACKENDS"] = {"default": SMTP_BACKEND}
    else:
        POST_OFFICE["BACKENDS"] = {"default": CONSOLE_BACKEND}
