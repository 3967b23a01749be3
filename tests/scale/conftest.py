"""Many simulated hosts against one database: only with POST_OFFICE_SCALE=1 (``make test-scale``).

The test runs with the settings tests.scale.settings (pytest --ds=tests.scale.settings), whose
INSTALLED_APPS hold django_tasks_db, and needs ``unshare`` (root) for the hosts' own hostnames.
"""

import os

collect_ignore = [] if os.environ.get("POST_OFFICE_SCALE") else ["test_many_hosts.py"]
