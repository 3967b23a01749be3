"""What the project's two settings share: the database and the addresses (django-mailer's and post_office's).

MAILER_SWITCH_DB: sqlite, postgres or mysql; MAILER_SWITCH_DB_NAME: the database (a file path for sqlite).
"""

import os

SECRET_KEY = "mailer-switch-project"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = "shop@example.com"
SERVER_EMAIL = "server@example.com"
EMAIL_SUBJECT_PREFIX = "[Shop] "
ADMINS = [("Ada Admin", "ada@example.com"), ("Bo Admin", "bo@example.com")]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True}]

_vendor = os.environ.get("MAILER_SWITCH_DB", "sqlite")
_name = os.environ.get("MAILER_SWITCH_DB_NAME", "mailer_switch.sqlite3")
if _vendor == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _name,
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif _vendor == "mysql":
    try:
        import MySQLdb  # noqa: F401  (mysqlclient, when it is installed)
    except ImportError:
        import pymysql

        pymysql.install_as_MySQLdb()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": _name,
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
elif _vendor == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _name}}
else:
    raise RuntimeError(f"MAILER_SWITCH_DB must be sqlite, postgres or mysql, not {_vendor!r}")
