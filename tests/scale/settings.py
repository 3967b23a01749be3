"""Settings of the many-hosts test (tests/scale/, ``make test-scale``) and of every worker it starts.

tests.tasks_settings (the test database and SMTP port from the environment, django-tasks-db's
DatabaseBackend with TASKS_ENABLED, more POST_OFFICE keys as JSON in POST_OFFICE_TEST_OPTIONS);
the ``celery worker`` processes load them through tests.celery_workers.app, whose broker comes
from POST_OFFICE_CELERY_BROKER. post_office's warnings go to stderr, the worker's output file.
"""

from tests.tasks_settings import *  # noqa: F403
from tests.tasks_settings import LOGGING

# tests.tasks_settings' logging with post_office at WARNING (its INFO lines, one per pass, would fill the
# workers' output files); django_tasks_db stays at INFO: the test waits for its "Starting worker ...".
LOGGING = {
    **LOGGING,
    "loggers": {**LOGGING["loggers"], "post_office": {**LOGGING["loggers"]["post_office"], "level": "WARNING"}},
}
