"""An email backend that only counts: the delivery benchmarks' in-memory target.

It neither serialises nor keeps messages, so a run measures the queue's own
cost (claiming, building each Django message, recording results). Used by both
packages: ``benchmarks.counting.CountingBackend`` in ours, ``counting.CountingBackend``
in django-post_office's virtualenv (where only the benchmarks folder is on the path).
"""

from __future__ import annotations

import threading

from django.core.mail.backends.base import BaseEmailBackend

_lock = threading.Lock()
sent = 0
opened = 0


class CountingBackend(BaseEmailBackend):
    def open(self) -> bool:
        global opened
        with _lock:
            opened += 1
        return True

    def send_messages(self, email_messages) -> int:  # type: ignore[no-untyped-def, override]
        global sent
        count = len(email_messages)
        with _lock:
            sent += count
        return count
