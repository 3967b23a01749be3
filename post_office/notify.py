"""Waking idle workers when mail is queued (PostgreSQL LISTEN/NOTIFY).

Enqueueing sends ``NOTIFY post_office_queue`` inside the caller's transaction,
so PostgreSQL delivers it only on commit (and never on rollback). No trigger
or other DDL is involved, so the worker needs no extra database rights. On
other databases workers simply poll every EMPTY_QUEUE_SLEEP seconds.

One NOTIFY per transaction is enough: a woken worker claims everything that
is due. Inside a transaction the first call sends it and leaves a no-op
marker in Django's on-commit list; later calls that find the marker send
nothing. When a savepoint rolls back, PostgreSQL drops the NOTIFYs sent in it
and Django drops the callbacks registered in it, marker included, so the next
call sends again.
"""

from __future__ import annotations

from django.db import connection, transaction

CHANNEL = "post_office_queue"


def notify_queued() -> None:
    """Tell listening workers that mail was queued (PostgreSQL only; delivered at commit)."""
    if connection.vendor != "postgresql":
        return
    if connection.in_atomic_block:
        if any(entry[1] is _notified for entry in connection.run_on_commit):
            return
        transaction.on_commit(_notified)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


def _notified() -> None:
    """The marker: this transaction has sent its NOTIFY (nothing to do at commit)."""
