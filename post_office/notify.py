"""Waking idle workers when mail is queued (PostgreSQL LISTEN/NOTIFY).

Enqueueing sends ``NOTIFY post_office_queue`` inside the caller's transaction,
so PostgreSQL delivers it only on commit (and never on rollback). No trigger
or other DDL is involved, so the worker needs no extra database rights. On
other databases workers simply poll every EMPTY_QUEUE_SLEEP seconds.
"""

from __future__ import annotations

from django.db import connection

CHANNEL = "post_office_queue"


def notify_queued() -> None:
    """Tell listening workers that mail was queued (PostgreSQL only; delivered at commit)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
