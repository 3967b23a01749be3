"""Settings for the test suite.

POST_OFFICE_TEST_DB picks the database (sqlite, postgres, mysql); POST_OFFICE_DB_NAME
its name (tests use "test_" + that name on PostgreSQL and MariaDB). A worker
subprocess started by a test gets POST_OFFICE_DB_NAME set to the test database,
and POST_OFFICE_TEST_SMTP_PORT to deliver over SMTP to an SMTPSink on 127.0.0.1.
"""

import os
import tempfile

import django

SECRET_KEY = "post-office-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "post_office",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # File templates used by the tests (tests/templates/email/...).
        "DIRS": [os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")],
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

_DB = os.environ.get("POST_OFFICE_TEST_DB", "sqlite")
DATABASES: dict[str, dict[str, object]]
if _DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("POST_OFFICE_DB_NAME", "post_office"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif _DB == "mysql":
    try:
        import MySQLdb  # noqa: F401  (mysqlclient, when it is installed)
    except ImportError:
        import pymysql

        pymysql.install_as_MySQLdb()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("POST_OFFICE_DB_NAME", "post_office"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
elif _DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("POST_OFFICE_DB_NAME", os.path.join(tempfile.gettempdir(), "post_office.sqlite3")),
            # Concurrent workers: take the write lock at BEGIN, so a transaction that
            # reads first waits for it instead of failing with "database is locked".
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
            # A file (not :memory:) so subprocess workers can share it.
            "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"post_office_test_{os.getpid()}.sqlite3")},
        }
    }
else:
    raise RuntimeError(f"POST_OFFICE_TEST_DB must be sqlite, postgres or mysql, not {_DB!r}")

MEDIA_ROOT = os.path.join(tempfile.gettempdir(), "post_office_test_media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LANGUAGES = [("en", "English"), ("de", "German"), ("pt-br", "Brazilian Portuguese"), ("fr", "French")]

DEFAULT_FROM_EMAIL = "webmaster@example.com"
SERVER_EMAIL = "server@example.com"
ADMINS: list = [("Admin One", "admin1@example.com"), ("Admin Two", "admin2@example.com")]
MANAGERS: list = [("Manager", "manager@example.com")]

if django.VERSION >= (6, 1):
    # Django 6.1: the queueing backend as a MAILERS entry; delivery through another.
    ADMINS = ["admin1@example.com", "admin2@example.com"]
    MANAGERS = ["manager@example.com"]
    MAILERS: dict[str, dict[str, object]] = {
        "default": {"BACKEND": "post_office.EmailBackend"},
        "smtp": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
    }
    POST_OFFICE = {"BACKENDS": {"default": "smtp"}}
else:
    EMAIL_BACKEND = "post_office.EmailBackend"
    POST_OFFICE = {"BACKENDS": {"default": "django.core.mail.backends.locmem.EmailBackend"}}

# Worker subprocesses started by tests deliver over SMTP to the test's SMTPSink.
_SMTP_PORT = os.environ.get("POST_OFFICE_TEST_SMTP_PORT")
if _SMTP_PORT:
    if django.VERSION >= (6, 1):
        MAILERS["smtp"] = {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": "127.0.0.1",
                "port": int(_SMTP_PORT),
                "use_tls": False,
                "use_ssl": False,
                "timeout": 10,
            },
        }
    else:
        EMAIL_HOST = "127.0.0.1"
        EMAIL_PORT = int(_SMTP_PORT)
        EMAIL_USE_TLS = False
        EMAIL_USE_SSL = False
        EMAIL_TIMEOUT = 10
        POST_OFFICE = {"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"post_office": {"handlers": ["null"], "propagate": False}},
}

# Knobs for worker subprocesses started by tests (tests/test_faults.py): a short
# lease so a killed worker's claims expire quickly, and a known thread count.
_knobs: dict[str, object] = {}
if os.environ.get("POST_OFFICE_TEST_LEASE_SECONDS"):
    _knobs["LEASE_SECONDS"] = float(os.environ["POST_OFFICE_TEST_LEASE_SECONDS"])
if os.environ.get("POST_OFFICE_TEST_THREADS"):
    _knobs["THREADS_PER_PROCESS"] = int(os.environ["POST_OFFICE_TEST_THREADS"])
if _knobs:
    POST_OFFICE = {**POST_OFFICE, **_knobs}  # type: ignore[dict-item]
