"""Settings for the Django Tasks tests with real workers (tests/tasks_workers/, ``make test-tasks``).

``tests.settings`` plus django-tasks-db's DatabaseBackend as the ``default`` task backend,
accepting only the queue POST_OFFICE_TEST_TASKS_QUEUE (default ``post_office_mail``), so a
``@task`` validated at import time against the default queue name would fail to import;
TASKS_ENABLED on, the delivery task enqueued on that queue with priority 10. The test process
and its ``manage.py db_worker`` subprocesses both use these settings.
"""

import json
import os

import django

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, POST_OFFICE

TASKS_QUEUE = os.environ.get("POST_OFFICE_TEST_TASKS_QUEUE", "post_office_mail")

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the backport

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": [TASKS_QUEUE]}}

POST_OFFICE = {**POST_OFFICE, "TASKS_ENABLED": True, "TASKS_QUEUE": TASKS_QUEUE, "TASKS_PRIORITY": 10}
# More POST_OFFICE keys for the worker subprocesses, as JSON (e.g. {"RETRY_INTERVAL": 1}).
POST_OFFICE.update(json.loads(os.environ.get("POST_OFFICE_TEST_OPTIONS") or "{}"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "post_office": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django_tasks_db": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
