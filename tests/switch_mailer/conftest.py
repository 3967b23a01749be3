"""The django-mailer import tests need .venv-mailer and the database servers: they run with `make test-switch-mailer`."""

import os

collect_ignore = [] if os.environ.get("POST_OFFICE_SWITCH_MAILER") else ["test_mailer_import.py"]
