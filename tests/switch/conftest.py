"""The switch tests need .venv-dpo and the database servers: they run with `make test-switch` only."""

import os

collect_ignore = [] if os.environ.get("POST_OFFICE_SWITCH") else ["test_dpo_switch.py", "test_dpo_kill.py"]
