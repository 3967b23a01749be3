"""Settings of the ``celery worker`` processes tests/celery_workers starts.

``tests.settings`` (database and SMTP port from the environment) plus
POST_OFFICE_TEST_OPTIONS, JSON merged into POST_OFFICE (the queues, the lease);
post_office's warnings (a requeued lease) go to stderr, the worker's output file.
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import POST_OFFICE

POST_OFFICE = {**POST_OFFICE, **json.loads(os.environ.get("POST_OFFICE_TEST_OPTIONS") or "{}")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"post_office": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}
