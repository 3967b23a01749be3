"""Small email backends for delivery tests.

Each class keeps what it sent (or refused) in class-level lists, because delivery
creates backend instances itself; tests call ``reset()`` in ``setUp``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from django.core.mail.backends.base import BaseEmailBackend


class RecordingBackend(BaseEmailBackend):
    """Accepts every message and keeps it in ``sent``, in the order it was sent."""

    sent: ClassVar[list[Any]] = []
    opened: ClassVar[int] = 0
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.sent = []
        cls.opened = 0

    def open(self) -> bool:
        with self._lock:
            type(self).opened += 1
        return True

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        with self._lock:
            type(self).sent.extend(email_messages)
        return len(email_messages)


class ScriptedBackend(BaseEmailBackend):
    """Raises a test-chosen error for some messages and records the rest.

    ``errors`` maps a subject to the exception raised for it; ``error_for_all``
    (when set) is raised for every message.
    """

    sent: ClassVar[list[Any]] = []
    attempts: ClassVar[list[str]] = []
    errors: ClassVar[dict[str, BaseException]] = {}
    error_for_all: ClassVar[BaseException | None] = None
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.sent = []
        cls.attempts = []
        cls.errors = {}
        cls.error_for_all = None

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        for message in email_messages:
            with self._lock:
                type(self).attempts.append(message.subject)
            error = type(self).error_for_all or type(self).errors.get(message.subject)
            if error is not None:
                raise error
            with self._lock:
                type(self).sent.append(message)
        return len(email_messages)


class FileRecordingBackend(BaseEmailBackend):
    """Appends each message's subject as one line to ``path``.

    Works across forked worker processes, which share nothing in memory with
    the test; the test sets ``path`` before the fork.
    """

    path: ClassVar[str | None] = None

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        assert self.path is not None, "set FileRecordingBackend.path first"
        # One short write per line in append mode: lines from several processes do not interleave.
        with open(self.path, "a", encoding="utf-8") as handle:
            for message in email_messages:
                handle.write(f"{message.subject}\n")
                handle.flush()
        return len(email_messages)
