"""A small project that uses post_office, as a django-post_office user's would.

The same settings serve django-post_office 3.x (in .venv-dpo, which fills the database) and this
package (in .venv, after the switch): a user swaps the package, not the settings. The environment
picks the database and where mail goes:

- DPO_SWITCH_DB: sqlite, postgres or mysql; DPO_SWITCH_DB_NAME: the database (a file path for sqlite)
- DPO_SWITCH_MEDIA_ROOT: where attachments are stored
- DPO_SWITCH_WITHOUT_SHOP: leave the shop app out (the project before it had one)
- DPO_SWITCH_SHOP_MIGRATIONS: the shop's migrations module (shop.migrations_old_dpo before 3.9)
- DPO_SWITCH_SMTP_PORT: deliver over SMTP to 127.0.0.1 on this port; without it, deliver through
  dpo_site.backends.RefusingBackend (in memory, refuses recipients at refused.example)
- DPO_SWITCH_LOG_SCHEMA: write each schema statement to stderr before it runs (tests/switch/test_dpo_kill.py
  watches for them to stop ``migrate`` at chosen points)
"""

import os

SECRET_KEY = "dpo-switch-project"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Berlin"
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "German")]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "post_office",
    "shop",
]
if os.environ.get("DPO_SWITCH_WITHOUT_SHOP"):
    INSTALLED_APPS.remove("shop")  # the project before it had a shop

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {},
    }
]

_vendor = os.environ.get("DPO_SWITCH_DB", "sqlite")
_name = os.environ.get("DPO_SWITCH_DB_NAME", "dpo_switch")
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
    raise RuntimeError(f"DPO_SWITCH_DB must be sqlite, postgres or mysql, not {_vendor!r}")

# A project that never ran django-post_office 3.9 or later has no migration depending on its 0012-0014.
if os.environ.get("DPO_SWITCH_SHOP_MIGRATIONS"):
    MIGRATION_MODULES = {"shop": os.environ["DPO_SWITCH_SHOP_MIGRATIONS"]}

MEDIA_ROOT = os.environ.get("DPO_SWITCH_MEDIA_ROOT", os.path.join(os.path.dirname(__file__), "media"))
DEFAULT_FROM_EMAIL = "shop@example.com"
EMAIL_BACKEND = "post_office.EmailBackend"

_smtp_port = os.environ.get("DPO_SWITCH_SMTP_PORT")
if _smtp_port:
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(_smtp_port)
    EMAIL_USE_TLS = EMAIL_USE_SSL = False
    EMAIL_TIMEOUT = 10
    _transport = "django.core.mail.backends.smtp.EmailBackend"
else:
    _transport = "dpo_site.backends.RefusingBackend"

POST_OFFICE = {
    "BACKENDS": {"default": _transport, "bulk": _transport},
    "DEFAULT_PRIORITY": "medium",
    "LOG_LEVEL": 2,
    "MAX_RETRIES": 2,
    "MESSAGE_ID_ENABLED": True,
    "MESSAGE_ID_FQDN": "shop.example",
}

if os.environ.get("DPO_SWITCH_LOG_SCHEMA"):
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "schema"}},
        "formatters": {"schema": {"format": "schema: %(message)s"}},
        "loggers": {"django.db.backends.schema": {"handlers": ["stderr"], "level": "DEBUG", "propagate": False}},
    }
