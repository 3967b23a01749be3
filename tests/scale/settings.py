"""Settings of the many-hosts test (tests/scale/, ``make test-scale``) and of every worker it starts.

tests.tasks_settings (the test database and SMTP port from the environment, django-tasks-db's
DatabaseBackend with TASKS_ENABLED, more POST_OFFICE keys as JSON in POST_OFFICE_TEST_OPTIONS);
the ``celery worker`` processes load them through tests.celery_workers.app, whose broker comes
from POST_OFFICE_CELERY_BROKER. post_office's warnings go to stderr, the worker's output file.
"""

from tests.tasks_settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "post_office": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        # "Starting worker ...": the test waits for it.
        "django_tasks_db": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
