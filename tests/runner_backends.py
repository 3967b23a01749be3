"""A slow backend for runmailer subprocess tests.

It appends ``start <subject>`` to the file named by POST_OFFICE_TEST_OUTBOX,
sleeps POST_OFFICE_TEST_SEND_DELAY seconds, then appends ``sent <subject>``,
so a test can see when a send is in flight and whether it finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend


def _note(line: str) -> None:
    with open(os.environ["POST_OFFICE_TEST_OUTBOX"], "a", encoding="utf-8") as handle:
        handle.write(f"{line}\n")


class SlowFileBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[Any]) -> int:
        for message in email_messages:
            _note(f"start {message.subject}")
            time.sleep(float(os.environ.get("POST_OFFICE_TEST_SEND_DELAY", "1")))
            _note(f"sent {message.subject}")
        return len(email_messages)
