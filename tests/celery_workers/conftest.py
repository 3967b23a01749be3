"""Real ``celery worker`` processes against real brokers: only with POST_OFFICE_CELERY_WORKERS=1 (make test-celery)."""

import os

collect_ignore = [] if os.environ.get("POST_OFFICE_CELERY_WORKERS") else ["test_celery_workers.py"]
