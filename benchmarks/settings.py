"""Settings for the benchmark runs of this package (never django-post_office's).

Everything comes from the environment, set by benchmarks/run.py for each scenario:
BENCH_DB (sqlite or postgres) and BENCH_DB_NAME pick the database; BENCH_BACKEND
(counting or smtp) the delivery backend, BENCH_SMTP_PORT the sink's port on
127.0.0.1; BENCH_THREADS and BENCH_MAX_CONNECTIONS the worker's threads and
connection cap (unset: the package defaults).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import database_settings  # noqa: E402 - the folder is put on the path first

SECRET_KEY = "post-office-benchmarks"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False, "OPTIONS": {}}]
LANGUAGES = [("en", "English")]
DEFAULT_FROM_EMAIL = "bench@example.com"

# SQLite as docs/delivery.rst recommends for concurrent workers (write lock taken at BEGIN).
DATABASES = database_settings(
    os.environ.get("BENCH_DB", "sqlite"),
    os.environ.get("BENCH_DB_NAME", "po_bench"),
    sqlite_options={"transaction_mode": "IMMEDIATE"},
)

EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_USE_TLS = False
EMAIL_USE_SSL = False
EMAIL_TIMEOUT = 30

_BACKENDS = {
    "counting": "benchmarks.counting.CountingBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
}
POST_OFFICE: dict[str, object] = {"BACKENDS": {"default": _BACKENDS[os.environ.get("BENCH_BACKEND", "counting")]}}
if os.environ.get("BENCH_THREADS"):
    POST_OFFICE["THREADS_PER_PROCESS"] = int(os.environ["BENCH_THREADS"])
if os.environ.get("BENCH_MAX_CONNECTIONS"):
    POST_OFFICE["MAX_CONNECTIONS"] = int(os.environ["BENCH_MAX_CONNECTIONS"])
