"""The Celery app the tests' ``celery worker`` processes run: ``celery -A tests.celery_workers.app worker``.

The broker comes from POST_OFFICE_CELERY_BROKER; POST_OFFICE_CELERY_BEAT_SCALE
(a factor) runs post_office's beat schedule that much faster under ``-B``.
Each worker takes one message at a time (prefetch 1), as docs/celery.rst advises.
"""

from __future__ import annotations

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.celery_workers.settings")
django.setup()

from post_office import tasks  # noqa: E402 - registers the shared tasks, once Django is set up

app = Celery("post_office_celery_tests")
app.conf.update(
    broker_url=os.environ.get("POST_OFFICE_CELERY_BROKER", "redis://127.0.0.1:6379/8"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_ignore_result=True,
)

_scale = float(os.environ.get("POST_OFFICE_CELERY_BEAT_SCALE") or 1)
app.conf.beat_schedule = {
    name: {**entry, "schedule": entry["schedule"] / _scale} for name, entry in tasks.beat_schedule().items()
}
