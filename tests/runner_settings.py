"""Settings for ``runmailer`` subprocesses started by tests/test_runner.py.

``tests.settings`` plus a few environment knobs:

- POST_OFFICE_TEST_OPTIONS: JSON merged into POST_OFFICE (e.g. ``{"RETRY_INTERVAL": 1}``);
- POST_OFFICE_TEST_BACKEND: dotted path of the backend behind the ``default`` delivery alias.

The ``post_office`` logger writes to stderr, so a test can wait for a log line.
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import POST_OFFICE

POST_OFFICE = {**POST_OFFICE, **json.loads(os.environ.get("POST_OFFICE_TEST_OPTIONS") or "{}")}
if os.environ.get("POST_OFFICE_TEST_BACKEND"):
    POST_OFFICE["BACKENDS"] = {**POST_OFFICE.get("BACKENDS", {}), "default": os.environ["POST_OFFICE_TEST_BACKEND"]}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"post_office": {"handlers": ["stderr"], "level": "DEBUG", "propagate": False}},
}
