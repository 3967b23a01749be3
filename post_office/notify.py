"""Waking idle workers when mail is queued (PostgreSQL LISTEN/NOTIFY).

Enqueueing sends ``NOTIFY post_office_queue`` inside the caller's transaction,
so PostgreSQL delivers it only on commit (and never on rollback). No trigger
or other DDL is involved, so the worker needs no extra database rights. On
other databases workers simply poll every EMPTY_QUEUE_SLEEP seconds.

``mail.send`` does not spend a round trip on it: its INSERT carries the call
(``RETURNING id, pg_notify(...)``, :mod:`post_office.enqueue.insert`), so it is
sent only when a row was inserted. Other writers call :func:`notify_queued`.

One NOTIFY per transaction is enough: a woken worker claims everything that
is due. Inside a transaction the first call sends it and leaves a no-op
marker in Django's on-commit list; later calls that find the marker send
nothing. When a savepoint rolls back, PostgreSQL drops the NOTIFYs sent in it
and Django drops the callbacks registered in it, marker included, so the next
call sends again.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections, transaction

CHANNEL = "post_office_queue"
#: The SQL expression that sends the NOTIFY (no parameters: it can ride in any statement).
NOTIFY_CALL = f"pg_notify('{CHANNEL}', '')"


def notify_queued(using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell listening workers that mail was queued (PostgreSQL only; delivered at commit)."""
    if not needs_notify(using):
        return
    mark_notified(using)
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


def needs_notify(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether mail queued now on ``using`` must send a NOTIFY: PostgreSQL, and not sent yet in this transaction."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    if connection.in_atomic_block:
        return not any(entry[1] is _notified for entry in connection.run_on_commit)
    return True


def mark_notified(using: str = DEFAULT_DB_ALIAS) -> None:
    """Note that this transaction sent its NOTIFY (a statement carrying :data:`NOTIFY_CALL` ran)."""
    if connections[using].in_atomic_block:
        transaction.on_commit(_notified, using=using)


def _notified() -> None:
    """The marker: this transaction has sent its NOTIFY (nothing to do at commit)."""
