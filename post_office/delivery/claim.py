"""Claiming: take a batch of due emails for one worker, under a token and a lease.

A claim marks emails ``sending`` with a lease (``claimed_by`` is a token unique
to the claim, ``lease_expires_at`` its end). On PostgreSQL and SQLite 3.35+ one
``UPDATE ... RETURNING`` statement claims and fetches a batch; elsewhere a short
``SELECT ... FOR UPDATE SKIP LOCKED`` transaction, or one UPDATE under SQLite's
single writer. Expired leases go back to the queue (expired emails fail: ``expiry``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import DataError, transaction
from django.db import connection as db_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import JSONField, Model, QuerySet
from django.db.models.functions import Length
from django.utils import timezone

from ..choices import CLAIMABLE, STATUS
from ..conf import settings as po_settings
from ..models import Attachment, ClaimIndex, Email, EmailTemplate, Log

logger = logging.getLogger("post_office")


def new_token(worker: str) -> str:
    """A claim token: the worker's name and a random part, unique to one claim."""
    return f"{worker}:{uuid.uuid4().hex[:16]}"


def claim(
    worker: str, lease: timedelta, limit: int, ids: Iterable[int] | None = None, skip_aliases: Iterable[str] = ()
) -> tuple[str, list[Email]]:
    """Take up to ``limit`` due emails (of ``ids`` if given) for ``worker``; return the token and them, loaded.

    ``skip_aliases``: delivery aliases not to take emails for (their connection failed this pass).
    """
    token = new_token(worker)
    if limit <= 0:
        return token, []
    now = timezone.now()
    claim_values = {
        "status": STATUS.sending,
        "claimed_by": token,
        "lease_expires_at": now + lease,
        "last_updated": now,
    }
    candidates = Email.objects.due(now).in_sending_order()
    try:
        emails = _claim_rows(token, candidates, limit, claim_values, now, ids, skip_aliases)
    except UNREADABLE as error:
        # A value the driver cannot turn back into Python (a year past 9999 on PostgreSQL,
        # a corrupt text on SQLite): the rows are claimed; load them one by one instead.
        emails = _salvage(token, error)
    _load_attachments(emails)
    _load_templates_to_render(emails)
    return token, emails


#: The text and HTML bodies: a claim loads them with the batch only when together they are at most
#: BODY_LIMIT characters. Larger ones are loaded by the delivery thread when it sends the email and
#: dropped once it is sent, so a batch of large emails is never in memory at once.
BODIES = ("message", "html_message")
BODY_LIMIT = 256 * 1024


#: What loading a stored value that cannot be read back raises (the database driver's DataError, a converter's error).
UNREADABLE = (DataError, ValueError, TypeError, AttributeError, OverflowError)


def _claim_rows(
    token: str,
    candidates: QuerySet[Email],
    limit: int,
    claim_values: dict[str, Any],
    now: datetime,
    ids: Iterable[int] | None,
    skip_aliases: Iterable[str],
) -> list[Email]:
    """Claim up to ``limit`` of ``candidates`` under ``token`` and load them (the way the database allows)."""
    narrowed = ids is not None
    if ids is not None:
        candidates = candidates.filter(id__in=list(ids))
    skipped = set(skip_aliases)
    if skipped:
        # The default alias is stored as "" too.
        candidates = candidates.exclude(backend_alias__in=skipped | ({""} if "default" in skipped else set()))
        narrowed = True
    if update_returns_rows():
        emails = _claim_returning(candidates if narrowed else None, limit, claim_values, now)
    elif db_connection.features.has_select_for_update_skip_locked:
        # A short transaction: rows locked by another worker's claim are skipped.
        with transaction.atomic(savepoint=False):
            claimed = _first_locked(candidates, limit)
            if claimed:
                Email.objects.filter(id__in=claimed).update(**claim_values)
        emails = _load_claimed(token)
    else:
        # One UPDATE statement runs under the database's single writer lock,
        # so two workers cannot both take the same row.
        subquery = candidates.values("id")[:limit]
        Email.objects.filter(id__in=subquery, status__in=CLAIMABLE).update(**claim_values)
        emails = _load_claimed(token)
    return emails


def _first_locked(candidates: QuerySet[Email], limit: int) -> list[int]:
    """Lock and return the ids of the first ``limit`` candidates in sending order, skipping locked rows.

    One read per claimable status, merged here: without partial indexes
    (MariaDB, MySQL) the claim index leads with the status, so each read
    takes its first rows from the index instead of sorting the whole queue.
    The few rows read beyond ``limit`` stay locked until the claim commits.
    """
    order = [*po_settings.SENDING_ORDER, "id"]
    names = [spec.lstrip("-") for spec in order]
    rows: list[tuple[Any, ...]] = []
    for status in CLAIMABLE:
        locked = candidates.filter(status=status).select_for_update(skip_locked=True)
        rows += locked.values_list(*names)[:limit]
    # The database's own order: NULL before any value ascending, after every value descending.
    for index in reversed(range(len(order))):
        rows.sort(
            key=lambda row: (row[index] is not None, 0 if row[index] is None else row[index]),
            reverse=order[index].startswith("-"),
        )
    return [row[-1] for row in rows[:limit]]


def _load_claimed(token: str) -> list[Email]:
    """Read back a claimed batch; bodies over BODY_LIMIT stay in the database until the email is sent."""
    claimed = Email.objects.filter(status=STATUS.sending, claimed_by=token)
    size = sum((Length(name) for name in BODIES[1:]), Length(BODIES[0]))
    large = list(claimed.alias(body_size=size).filter(body_size__gt=BODY_LIMIT).values_list("id", flat=True))
    if not large:
        return list(claimed.in_sending_order())
    emails = list(claimed.exclude(id__in=large))
    for email in claimed.filter(id__in=large).defer(*BODIES):
        email.large_bodies = True
        emails.append(email)
    return _in_sending_order(emails)


def _salvage(token: str, error: BaseException) -> list[Email]:
    """Load a claimed batch row by row; a row that cannot be loaded fails alone, with a Log row saying why.

    Its unreadable columns are cleared (set to NULL, or their default), so the
    row can be read again, in the admin and elsewhere; the Log row names them.
    """
    logger.error(
        "A claimed batch holds a row that cannot be read back (%s: %s); loading it row by row",
        type(error).__name__,
        error,
    )
    claimed = Email.objects.filter(status=STATUS.sending, claimed_by=token)
    emails = []
    for pk in claimed.order_by("id").values_list("id", flat=True):
        try:
            emails.append(claimed.get(pk=pk))
        except UNREADABLE as row_error:
            _fail_unreadable(pk, token, row_error)
    return _in_sending_order(emails)


def _fail_unreadable(pk: int, token: str, error: BaseException) -> None:
    """Mark a row that cannot be loaded failed, clear the values that cannot be read, and log it."""
    cleared: dict[str, Any] = {}
    for field in Email._meta.concrete_fields:
        if field.primary_key:
            continue
        try:
            list(Email.objects.filter(pk=pk).values_list(field.attname, flat=True))
        except UNREADABLE:
            cleared[field.attname] = None if field.null else field.get_default()
            if cleared[field.attname] is None and not field.null:
                cleared[field.attname] = timezone.now()  # the non-null dates: created, last_updated
    Email.objects.filter(pk=pk, claimed_by=token).update(
        status=STATUS.failed, claimed_by="", lease_expires_at=None, **cleared
    )
    columns = ", ".join(sorted(cleared)) or "unknown"
    message = f"The stored email could not be read back ({type(error).__name__}: {error}); cleared: {columns}"
    Log.objects.create(
        email_id=pk, status=STATUS.failed, exception_type="UnreadableRow", message=message[:10000], worker=token
    )
    logger.error("Email %s failed: %s", pk, message, extra={"email_id": pk})


def release(token: str, emails: Iterable[Email]) -> None:
    """Give back claimed emails that were never attempted."""
    ids = [e.pk for e in emails]
    if ids:
        Email.objects.filter(id__in=ids, claimed_by=token, status=STATUS.sending).update(
            status=STATUS.queued, claimed_by="", lease_expires_at=None, last_updated=timezone.now()
        )


def renew(held: Mapping[str, Iterable[int]], lease: timedelta) -> int:
    """Extend the leases of the emails a live worker still holds (ids by claim token); return how many rows.

    The rows are looked up by primary key, where the token is still theirs: reading the
    ``sending`` rows through an index leading with the status locks, on MariaDB/MySQL, the
    entries of other workers' rows while they record results, and the two deadlock.
    """
    until = timezone.now() + lease
    renewed = 0
    for token, ids in held.items():
        ordered = sorted(set(ids))
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            renewed += Email.objects.filter(id__in=chunk, claimed_by=token).update(lease_expires_at=until)
    return renewed


def due_but_locked() -> bool:
    """True when a claim found nothing although due emails exist.

    With SKIP LOCKED a claim skips the rows another worker's claim has
    locked at that moment, and MySQL/MariaDB lock every row they examine
    while sorting, not only the ones they return: the queue only looks empty.
    """
    return bool(db_connection.features.has_select_for_update_skip_locked) and Email.objects.due().exists()


def requeue_stale_leases() -> int:
    """Return emails whose worker died (lease expired) to the queue."""
    count = Email.objects.stale_leases().update(
        status=STATUS.requeued, claimed_by="", lease_expires_at=None, last_updated=timezone.now()
    )
    if count:
        logger.warning("Requeued %d emails whose lease expired", count, extra={"count": count})
    return count


def update_returns_rows() -> bool:
    """Whether one UPDATE ... RETURNING statement can claim a batch (PostgreSQL, SQLite 3.35+; not MariaDB)."""
    vendor = db_connection.vendor
    if vendor == "postgresql":
        return True
    return vendor == "sqlite" and db_connection.Database.sqlite_version_info >= (3, 35)  # type: ignore[attr-defined]


def column(model: type[Model], name: str) -> str:
    """The quoted column of a model field."""
    field: Any = model._meta.get_field(name)
    return str(db_connection.ops.quote_name(field.column))


def _claim_returning(
    candidates: QuerySet[Email] | None, limit: int, values: dict[str, Any], now: datetime
) -> list[Email]:
    """Claim and fetch a batch in one statement, in sending order.

    ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``
    runs as one statement in autocommit: the rows it selects are locked until
    it ends, so concurrent workers skip them, and the claimed rows come back
    without a second query. Each row also says whether the email has
    attachments, so the attachment query runs only when one does.
    """
    statement = _ClaimStatement.get(candidates, limit, now)
    params = [
        Email._meta.get_field(name).get_db_prep_save(values[name], db_connection)  # type: ignore[union-attr]
        for name in _ClaimStatement.ASSIGNED
    ]
    with db_connection.cursor() as cursor:
        cursor.execute(statement.sql, [*params, *statement.params(now)])
        rows = cursor.fetchall()
    emails = _RowLoader.get().emails(rows, values)
    return _in_sending_order(emails)


class _ClaimStatement:
    """The claim's UPDATE ... RETURNING text, compiled once per batch size and sending order.

    Compiling the due() queryset costs the main thread most of a millisecond
    per batch; the text only changes with the limit, the sending order and
    the database. The current time, the only parameter that changes, is found
    by compiling with a marker time in its place.
    """

    _cache: dict[tuple[Any, ...], _ClaimStatement] = {}

    def __init__(self, sql: str, params: list[Any], now_positions: list[int]) -> None:
        self.sql, self._params, self._now_positions = sql, params, now_positions

    def params(self, now: datetime) -> list[Any]:
        params = list(self._params)
        if self._now_positions:
            adapted = adapt_datetime(now)
            for position in self._now_positions:
                params[position] = adapted
        return params

    @classmethod
    def get(cls, candidates: QuerySet[Email] | None, limit: int, now: datetime) -> _ClaimStatement:
        """The statement for the due emails (``candidates`` None), or for a narrower queryset (compiled each time)."""
        if candidates is not None:
            return cls._compile(candidates, limit, None)
        key = (db_connection.alias, db_connection.vendor, limit, tuple(po_settings.SENDING_ORDER))
        statement = cls._cache.get(key)
        if statement is None:
            marker = now.replace(year=1901, microsecond=123457)
            statement = cls._cache[key] = cls._compile(Email.objects.due(marker).in_sending_order(), limit, marker)
        return statement

    @classmethod
    def _compile(cls, candidates: QuerySet[Email], limit: int, marker: datetime | None) -> _ClaimStatement:
        subquery = candidates.values("id")[:limit]
        if db_connection.features.has_select_for_update_skip_locked:
            # Django compiles FOR UPDATE only inside a transaction; nothing is executed here.
            with transaction.atomic(savepoint=False):
                sub_sql, sub_params = subquery.select_for_update(skip_locked=True).query.sql_with_params()
        else:
            sub_sql, sub_params = subquery.query.sql_with_params()
        quote = db_connection.ops.quote_name
        table, pk = quote(Email._meta.db_table), column(Email, "id")
        if marker is not None:
            sub_sql = _indexed(sub_sql, table)
        link = Attachment.emails.through
        assignments = ", ".join(f"{column(Email, name)} = %s" for name in _ClaimStatement.ASSIGNED)
        returning = _RowLoader.get().returning(quote)
        claimable = ", ".join(str(int(value)) for value in CLAIMABLE)
        # Only quoted names from the models and Django's compiled subquery go into the text; values are parameters.
        has_attachments = (
            f"EXISTS (SELECT 1 FROM {quote(link._meta.db_table)} WHERE {column(link, 'email')} = {table}.{pk})"  # noqa: S608
        )
        # SQLite would read the status index for the outer status check (the whole queue) rather than
        # look up the batch's ids: NOT INDEXED leaves it the rowid lookups.
        target = f"{table} NOT INDEXED" if db_connection.vendor == "sqlite" else table
        sql = (
            f"UPDATE {target} SET {assignments} WHERE {pk} IN ({sub_sql}) AND {column(Email, 'status')} IN ({claimable}) "  # noqa: S608
            f"RETURNING {returning}, {has_attachments} AS has_attachments"
        )
        positions = []
        if marker is not None:
            adapted = adapt_datetime(marker)
            positions = [index for index, param in enumerate(sub_params) if param == adapted]
        return cls(sql, list(sub_params), positions)

    #: The columns the claim sets, in the order of its parameters.
    ASSIGNED = ("status", "claimed_by", "lease_expires_at", "last_updated")


def explain(limit: int) -> str:
    """The database's plan for the statements a claim of ``limit`` due emails runs (nothing is claimed).

    PostgreSQL's is measured (EXPLAIN ANALYZE, rolled back); the others are the planner's choice only.
    """
    now = timezone.now()
    if update_returns_rows():
        statement = _ClaimStatement.get(None, limit, now)
        values = {"status": STATUS.sending, "claimed_by": "explain", "lease_expires_at": now, "last_updated": now}
        params = [
            Email._meta.get_field(name).get_db_prep_save(values[name], db_connection)  # type: ignore[union-attr]
            for name in _ClaimStatement.ASSIGNED
        ]
        prefix = "EXPLAIN (ANALYZE, COSTS OFF)" if db_connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN"
        with transaction.atomic(), db_connection.cursor() as cursor:
            cursor.execute(f"{prefix} {statement.sql}", [*params, *statement.params(now)])
            lines = [" ".join(str(value) for value in row) for row in cursor.fetchall()]
            transaction.set_rollback(True)
        return "\n".join(lines)
    # One locking read per claimable status (_first_locked).
    candidates = Email.objects.due(now).in_sending_order()
    with transaction.atomic():
        return "\n".join(
            candidates.filter(status=status).select_for_update(skip_locked=True).values_list("id")[:limit].explain()
            for status in CLAIMABLE
        )


def claim_index() -> ClaimIndex:
    """The claim's index (models.ClaimIndex)."""
    return next(index for index in Email._meta.indexes if isinstance(index, ClaimIndex))


def _indexed(sql: str, table: str) -> str:
    """On SQLite, the claim of the due emails read through the claim index when it serves the sending order.

    Without ANALYZE's statistics SQLite's planner prefers an index on the status
    and sorts the whole queue; INDEXED BY names the partial index, whose
    condition the statement repeats (EmailQuerySet.queued).
    """
    index = claim_index()
    if db_connection.vendor != "sqlite" or [*po_settings.SENDING_ORDER, "id"] != list(index.fields):
        return sql
    source = f"FROM {table} "
    return with_hint(sql, source, f"FROM {table} INDEXED BY {db_connection.ops.quote_name(index.name)} ")


def with_hint(sql: str, source: str, replacement: str) -> str:
    """``sql`` with its one ``source`` (e.g. ``FROM table``) replaced by ``replacement``, which adds an index hint."""
    if sql.count(source) != 1:
        raise RuntimeError(f"The statement has no single {source.strip()}: {sql}")
    return sql.replace(source, replacement)


def adapt_datetime(value: datetime) -> Any:
    """A datetime as the database driver takes it in a query (what a lookup on a DateTimeField passes)."""
    return Email._meta.get_field("scheduled_time").get_db_prep_value(value, db_connection, prepared=False)  # type: ignore[union-attr]


class _RowLoader:
    """Turns the rows a claim returns into Email instances, with the fields' own converters.

    What ``Email.objects.raw()`` does, without resolving the columns and
    building converters again for every batch. The columns the claim sets are
    not read back (their values are known), nor ``created`` (left deferred).
    Empty JSON lists and objects, most of an email's JSON columns, skip the
    JSON parser.
    """

    _cache: dict[tuple[str, str], _RowLoader] = {}

    def __init__(self) -> None:
        fields = [field for field in Email._meta.concrete_fields if field.name != "created"]
        returned = [field for field in fields if field.name not in _ClaimStatement.ASSIGNED]
        self.columns = [str(field.column) for field in returned]
        #: For each returned column: its converters (the fields' own, as a queryset applies them).
        self.converters: list[tuple[int, list[Callable[..., Any]], Any]] = []
        for index, column in enumerate(returned):
            expression = column.get_col(Email._meta.db_table)
            converters = db_connection.ops.get_db_converters(expression) + expression.get_db_converters(db_connection)
            if isinstance(column, JSONField) and column.decoder is None:
                converters = [_json_value if c == column.from_db_value else c for c in converters]
            if converters:
                self.converters.append((index, converters, expression))
        #: Where each returned column goes among the loaded fields (in model order), and where each claim value goes.
        self.names = {field.attname for field in fields}
        slot = {column.name: position for position, column in enumerate(fields)}
        self.placement = [(slot[column.name], index) for index, column in enumerate(returned)]
        self.claim_slots = [(slot[name], name) for name in _ClaimStatement.ASSIGNED]
        self.width = len(fields)
        #: The bodies, returned only when small (see BODY_LIMIT): their index among the returned columns.
        self.bodies = [index for index, column in enumerate(returned) if column.name in BODIES]
        self.body_slots = {slot[name] for name in BODIES}
        self.names_without_bodies = self.names - set(BODIES)

    def returning(self, quote: Callable[[str], str]) -> str:
        """The RETURNING list: every returned column, the bodies only when they are small (else NULL)."""
        size = " + ".join(f"LENGTH({quote(column(Email, name))})" for name in BODIES)
        return ", ".join(
            f"CASE WHEN {size} <= {int(BODY_LIMIT)} THEN {quote(name)} END" if index in self.bodies else quote(name)
            for index, name in enumerate(self.columns)
        )

    @classmethod
    def get(cls) -> _RowLoader:
        key = (db_connection.alias, db_connection.vendor)
        loader = cls._cache.get(key)
        if loader is None:
            loader = cls._cache[key] = cls()
        return loader

    def emails(self, rows: list[tuple[Any, ...]], values: dict[str, Any]) -> list[Email]:
        """Instances for the returned rows (each ending in the has_attachments flag); ``values``: what the claim set."""
        alias, converters, placement, names = db_connection.alias, self.converters, self.placement, self.names
        template: list[Any] = [None] * self.width
        for slot, name in self.claim_slots:
            template[slot] = values[name]
        emails = []
        for row in rows:
            data = list(row)
            for index, functions, expression in converters:
                value = data[index]
                for function in functions:
                    value = function(value, expression, db_connection)
                data[index] = value
            loaded = template.copy()
            for slot, index in placement:
                loaded[slot] = data[index]
            if data[self.bodies[0]] is None:
                # Large bodies were left in the database: loaded when the email is sent (bodies are never NULL).
                loaded = [value for position, value in enumerate(loaded) if position not in self.body_slots]
                email = Email.from_db(alias, self.names_without_bodies, loaded)
                email.large_bodies = True
            else:
                email = Email.from_db(alias, names, loaded)
            email.has_attachments = bool(row[-1])
            emails.append(email)
        return emails


def _json_value(value: str | None, expression: Any, connection: BaseDatabaseWrapper) -> Any:
    """``JSONField.from_db_value`` for a field without a custom decoder, with NULL, empty lists and objects made directly."""
    if value is None:
        return None
    if value == "[]":
        return []
    if value == "{}":
        return {}
    return expression.target.from_db_value(value, expression, connection)


def _in_sending_order(emails: list[Email]) -> list[Email]:
    """Sort as ``in_sending_order()`` does (rows a statement returns come in no particular order)."""
    emails.sort(key=lambda email: email.pk)
    for spec in reversed(po_settings.SENDING_ORDER):
        name = spec.lstrip("-")
        # None sorts last ascending and first descending, as PostgreSQL orders NULLs.
        emails.sort(
            key=lambda email: (getattr(email, name) is None, getattr(email, name) or 0), reverse=spec.startswith("-")
        )
    return emails


def _load_templates_to_render(emails: list[Email]) -> None:
    """Fetch, in one query, the templates of emails rendered at delivery (render_on_delivery).

    Cheaper than joining the template table for every claimed email: most were
    rendered when they were queued and never need their template again.
    """
    wanted = {email.template_id for email in emails if email.context is not None and email.template_id is not None}
    if not wanted:
        return
    templates = EmailTemplate.objects.in_bulk(wanted)
    for email in emails:
        if email.template_id in wanted and email.context is not None:
            email.template = templates.get(email.template_id)


def _load_attachments(emails: list[Email]) -> None:
    """Give each claimed email its attachments, in the order they were attached.

    One query on the link table (plus one for the attachments, when there are
    any) instead of Django's prefetch, which builds a related manager and a
    queryset for every email even when none has an attachment. Attachment rows
    are shared between emails, so the link table's order is each email's own.
    """
    link = Attachment.emails.through
    # A claim made with UPDATE ... RETURNING says which emails have attachments.
    wanted = [email.pk for email in emails if email.has_attachments is not False]
    pairs = (
        list(link.objects.filter(email_id__in=wanted).order_by("id").values_list("email_id", "attachment_id"))
        if wanted
        else []
    )
    rows = Attachment.objects.in_bulk({attachment_id for _email_id, attachment_id in pairs}) if pairs else {}
    per_email: dict[int, list[Attachment]] = {}
    for email_id, attachment_id in pairs:
        per_email.setdefault(email_id, []).append(rows[attachment_id])
    for email in emails:
        email.loaded_attachments = per_email.get(email.pk, [])
