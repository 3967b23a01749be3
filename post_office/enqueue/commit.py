"""One announcement per committed transaction that queued mail (``queue_committed``).

``email_queued`` is sent once per ``send()``/``send_many()`` call; a task-queue
trigger wants one delivery task per commit instead, however many calls the
transaction made. The first call in a transaction leaves a :class:`Commit` in
Django's on-commit list; later calls find it there and add their emails to it.
When a savepoint rolls back, Django drops the callbacks registered in it (a
Commit left there included), so the next call starts a new one; a Commit
registered before the savepoint keeps counting the rolled-back emails, which
costs at most one delivery task that finds nothing to do.

Outside a transaction (autocommit) each call is its own commit and is
announced at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db import connection, transaction

from ..choices import PRIORITY
from ..models import Email
from ..signals import queue_committed

#: At most this many ids of high-priority emails travel with the signal; above it, ``high`` is None.
HIGH_IDS_LIMIT = 1000


class Commit:
    """The emails one transaction queued, announced by ``queue_committed`` once it commits."""

    def __init__(self) -> None:
        self.by_priority: Counter[str] = Counter()
        self.high: list[int] = []

    def add(self, emails: Iterable[Email]) -> None:
        for email in emails:
            name = PRIORITY(email.priority).name
            self.by_priority[name] += 1
            if name == "high":
                self.high.append(email.pk)

    def __call__(self) -> None:
        count = sum(self.by_priority.values())
        if not count:
            return
        high = self.high if len(self.high) <= HIGH_IDS_LIMIT else None
        queue_committed.send(sender=Email, count=count, by_priority=dict(self.by_priority), high=high)


def announce(emails: list[Email]) -> None:
    """Count ``emails`` into this transaction's announcement (announced at once in autocommit)."""
    if connection.in_atomic_block:
        for entry in connection.run_on_commit:
            if isinstance(entry[1], Commit):
                entry[1].add(emails)
                return
    commit = Commit()
    commit.add(emails)
    transaction.on_commit(commit)
