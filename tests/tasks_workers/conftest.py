"""django-tasks-db's real db_worker processes: only with POST_OFFICE_TASKS_WORKERS=1 (``make test-tasks``).

They need the settings tests.tasks_settings (pytest --ds=tests.tasks_settings), whose
INSTALLED_APPS hold django_tasks_db.
"""

import os

collect_ignore = [] if os.environ.get("POST_OFFICE_TASKS_WORKERS") else ["test_db_worker.py"]
