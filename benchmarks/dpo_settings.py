"""Settings for django-post_office 3.12.0 in its own virtualenv (.venv-dpo).

The same environment variables as benchmarks/settings.py. Only the benchmarks
folder is on sys.path there, so ``post_office`` is django-post_office's package.
"""

import os

from harness import database_settings

SECRET_KEY = "post-office-benchmarks"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False, "OPTIONS": {}}]
LANGUAGES = [("en", "English")]
DEFAULT_FROM_EMAIL = "bench@example.com"

DATABASES = database_settings(os.environ.get("BENCH_DB", "sqlite"), os.environ.get("BENCH_DB_NAME", "po_bench_dpo"))

EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_SMTP_PORT", "25"))
EMAIL_USE_TLS = False
EMAIL_USE_SSL = False
EMAIL_TIMEOUT = 30

_BACKENDS = {
    "counting": "counting.CountingBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
}
POST_OFFICE: dict[str, object] = {"BACKENDS": {"default": _BACKENDS[os.environ.get("BENCH_BACKEND", "counting")]}}
if os.environ.get("BENCH_THREADS"):
    POST_OFFICE["THREADS_PER_PROCESS"] = int(os.environ["BENCH_THREADS"])
