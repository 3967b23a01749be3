"""The suite's fixed hypothesis budget (tests/test_properties.py), and a clean enqueue state per test.

Examples are derived from each test's name, not drawn at random, and no example
database is kept: every run on every database tries the same inputs.
``HYPOTHESIS_PROFILE=post_office-long`` tries ten times as many.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

#: Examples per property; tests/test_properties.py may ask for a multiple of it.
EXAMPLES = 100

_FIXED = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
}
settings.register_profile("post_office", max_examples=EXAMPLES, **_FIXED)
settings.register_profile("post_office-long", max_examples=EXAMPLES * 10, **_FIXED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "post_office"))

# The browser tests need Chromium and Playwright: they run with `make test-e2e` (POST_OFFICE_E2E=1), not `make test`.
collect_ignore_glob = [] if os.environ.get("POST_OFFICE_E2E") else ["e2e/*"]


@pytest.fixture(autouse=True)
def _no_empty_do_not_send_list_remembered():
    """Each test starts as a new process would: not knowing the do-not-send list to be empty.

    mail.send remembers an empty list for a few seconds (post_office.enqueue.do_not_send);
    a test that ran before must not decide which statement this one sees.
    """
    from post_office.enqueue.do_not_send import forget_empty

    forget_empty()
