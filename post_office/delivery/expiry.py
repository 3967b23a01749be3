"""Expired mail: what a pass does before its first claim, besides requeueing stale leases (``claim``).

Queued emails past their ``expires_at`` are failed, each with an "Expired" Log
row. The read goes through the expiry index (models.ExpiryIndex), which holds
only the queued emails that have an expiry, so its cost does not grow with the
queue (benchmarks/RESULTS.md, "Cost that does not grow with the backlog").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import connection as db_connection
from django.db.models import QuerySet
from django.db.models.sql.subqueries import UpdateQuery
from django.utils import timezone

from ..choices import CLAIMABLE, STATUS
from ..indexes import ExpiryIndex
from ..models import Email, Log
from .claim import update_returns_rows, with_hint


def fail_expired(worker: str, log: bool) -> int:
    """Mark queued emails past their expiry as failed (they are never sent); return how many.

    ``log``: write an "Expired" Log row for each.
    """
    expired = 0
    while True:
        now = timezone.now()
        ids = expired_ids(now, 1000)
        if not ids:
            return expired
        mine = _fail(ids, worker, now)
        if log and mine:
            Log.objects.bulk_create(
                Log(
                    email_id=pk,
                    status=STATUS.failed,
                    exception_type="Expired",
                    message="expires_at has passed",
                    worker=worker,
                )
                for pk in mine
            )
        expired += len(mine)


def _fail(ids: list[int], worker: str, now: datetime) -> list[int]:
    """Fail those of ``ids`` still claimable; return the ids this worker's UPDATE changed.

    Two workers starting together select the same ids: only the rows one
    worker really changed are its own, so each expired email gets one Log.
    PostgreSQL and SQLite return them from the UPDATE; elsewhere the UPDATE
    tags them with a token, read back and cleared.
    """
    candidates = Email.objects.filter(id__in=ids, status__in=CLAIMABLE)
    values: dict[str, Any] = {"status": STATUS.failed, "last_updated": now}
    if update_returns_rows():
        # claimed_by ends empty, as after the token's round trip below.
        return _update_by_ids(candidates, {**values, "claimed_by": ""}, returning=True)
    token = f"{worker}:expired:{uuid.uuid4().hex[:16]}"
    _update_by_ids(candidates, {**values, "claimed_by": token})
    tagged = Email.objects.filter(id__in=ids, claimed_by=token)
    mine = list(tagged.values_list("id", flat=True))
    if mine:
        tagged.update(claimed_by="")
    return mine


def expired_ids(now: datetime, limit: int) -> list[int]:
    """The ids of up to ``limit`` queued emails whose expiry has passed, read from the expiry index."""
    sql, params = _expired_statement(now, limit)
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _expired_statement(now: datetime, limit: int) -> tuple[str, tuple[Any, ...]]:
    """The SELECT of expired_ids: ``Email.objects.expired(now)``'s ids, on SQLite through the expiry index.

    The index (models.ExpiryIndex) holds only the queued emails that have an
    expiry, so the read takes the expired ones, not the queue. Without ANALYZE's
    statistics SQLite's planner prefers a status index (the whole queue):
    there the statement names the index (INDEXED BY).
    """
    queryset = Email.objects.expired(now).values_list("id", flat=True)[:limit]
    sql, params = queryset.query.sql_with_params()
    if db_connection.vendor == "sqlite":
        table = db_connection.ops.quote_name(Email._meta.db_table)
        index = db_connection.ops.quote_name(expiry_index().name)
        sql = with_hint(sql, f"FROM {table} ", f"FROM {table} INDEXED BY {index} ")
    return sql, tuple(params)


def explain() -> dict[str, str]:
    """The database's plans for what a pass reads before its first claim: expired mail, stale leases.

    The expired ids' SELECT as fail_expired runs it; the stale leases as a
    SELECT with requeue_stale_leases' condition. PostgreSQL's are measured (EXPLAIN ANALYZE).
    """
    now = timezone.now()
    stale = Email.objects.stale_leases(now).values_list("id", flat=True).query.sql_with_params()
    prefix = {"postgresql": "EXPLAIN (ANALYZE, COSTS OFF)", "sqlite": "EXPLAIN QUERY PLAN"}
    plans = {}
    with db_connection.cursor() as cursor:
        for name, (sql, params) in (("expire", _expired_statement(now, 1000)), ("requeue", stale)):
            cursor.execute(f"{prefix.get(db_connection.vendor, 'EXPLAIN')} {sql}", params)
            plans[name] = "\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall())
    return plans


def _update_by_ids(queryset: QuerySet[Email], values: dict[str, Any], returning: bool = False) -> list[int]:
    """``queryset.update(**values)`` for a queryset narrowed to a list of ids; return the changed rows' ids.

    ``returning``: the UPDATE returns them (``RETURNING``, see
    claim.update_returns_rows); else the list is empty. On SQLite the UPDATE is
    NOT INDEXED: for the status check beside the ids it would read a status
    index over the whole queue instead of looking the ids up by rowid (as the
    claim's UPDATE would, _ClaimStatement).
    """
    if db_connection.vendor != "sqlite" and not returning:
        queryset.update(**values)
        return []
    query: UpdateQuery = queryset.query.chain(UpdateQuery)  # type: ignore[assignment]
    query.add_update_values(values)
    sql, params = query.get_compiler(connection=db_connection).as_sql()
    quote = db_connection.ops.quote_name
    table = quote(Email._meta.db_table)
    if db_connection.vendor == "sqlite":
        # Only the quoted table name goes into the text; the values stay parameters.
        sql = with_hint(sql, f"UPDATE {table} SET ", f"UPDATE {table} NOT INDEXED SET ")  # noqa: S608
    if returning:
        sql = f"{sql} RETURNING {quote(str(Email._meta.pk.column))}"  # type: ignore[union-attr]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()] if returning else []


def expiry_index() -> ExpiryIndex:
    """The index fail_expired reads (models.ExpiryIndex)."""
    return next(index for index in Email._meta.indexes if isinstance(index, ExpiryIndex))
