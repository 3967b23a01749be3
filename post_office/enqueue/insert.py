"""Emails written with as few round trips as the database allows.

``mail.send`` pays for its INSERT inside the caller's web request, so what else
must happen at enqueue rides in that one statement (:func:`store_single`)::

    INSERT INTO post_office_email (...) SELECT %s, ...
    WHERE NOT EXISTS (SELECT 1 FROM post_office_donotsendentry WHERE address IN (%s, ...))
    RETURNING id, pg_notify('post_office_queue', '')

* the do-not-send check: the row goes in only when none of its recipients is
  listed (the list's unique index answers it). When one is, nothing is
  inserted and the caller takes the ordinary path for that email (screen the
  recipients, insert, Log rows), which reads the list again;
* on PostgreSQL, the NOTIFY that wakes ``runmailer`` (:mod:`post_office.notify`):
  called for the inserted row only, delivered at commit like any NOTIFY, and
  left out when this transaction has sent it already.

While this process knows the list to be empty (the checking statement also
returns ``NOT EXISTS (SELECT 1 FROM <list>)``; see
:func:`post_office.enqueue.do_not_send.known_empty`) the row goes in with a
plain ``INSERT ... VALUES``, which PostgreSQL parses, plans and runs in about
three quarters of the checking statement's time. On PostgreSQL with psycopg 3 and
Django's default client-side binding, these statements travel with their
parameters apart (server-side binding, an unnamed statement, never prepared,
so a pooler in transaction mode is not troubled): quoting an email's texts into
the SQL cost the client about a fifth of the statement's time.

``send_many`` writes its emails with multi-row INSERTs (:func:`insert_rows`).
On PostgreSQL with psycopg 3 it takes their ids from the table's sequence
(one ``SELECT nextval(...)`` for all of them) and writes the rows with ``COPY``,
which the server takes in about a fifth of an INSERT's time per row
(benchmarks/RESULTS.md, "A cheaper mail.send"); with psycopg 2 the rows of a
chunk travel in one JSON parameter (``json_populate_recordset``), since psycopg
parses a statement of thousands of placeholders again on every call. The
``COPY`` runs through Django's cursor: execute wrappers see it and
``connection.queries`` records it.
Values are converted as Django's own INSERT converts them (``pre_save``, then
``get_db_prep_save``; text and integers already of the column's type pass as
they are), and :func:`store_single` sends ``pre_save``/``post_save`` as
``Model.save()`` does. Where the model needs more than that (a database
default, a generated column, a field with its own placeholder) or the database
cannot return new ids, :func:`plan_for` answers None and the callers use
Django's ``save()``/``bulk_create()``; so does a project that routes the
do-not-send list to another database than the emails.
"""

from __future__ import annotations

import datetime
import functools
import json
import operator
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models.signals import post_save, pre_save

from ..conf import settings as po_settings
from ..delivery.do_not_send import considered
from ..models import DoNotSendEntry, DoNotSendQuerySet, Email, Log, do_not_send_key
from ..notify import NOTIFY_CALL, mark_notified, needs_notify, notify_queued
from .do_not_send import Screened, forget_empty, found_empty, known_empty, list_generation, screen, screened_logs

__all__ = ["Plan", "insert_many", "insert_rows", "plan_for", "store_single", "unlisted_keys"]

#: Rows per statement on the JSON path (one parameter: only the document's size grows).
_JSON_BATCH = 1000

#: Fewer rows than this take one INSERT: the ids' SELECT before a COPY is a round trip more.
_COPY_MIN = 4

#: ``count`` new ids from the id column's sequence, in order (NULLs where the column has none).
_IDS_SQL = (
    "SELECT nextval(sequence) FROM (SELECT pg_get_serial_sequence(%s, %s)::regclass AS sequence) AS found, "
    "generate_series(1, %s)"
)

#: Field classes whose values pass unchanged when they already have the type Django would convert them to.
_TEXT = (models.CharField, models.TextField)
_INTEGER = (
    models.SmallIntegerField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
)


@dataclass(frozen=True)
class _Column:
    attname: str
    field: models.Field[Any, Any]
    #: Call ``field.pre_save`` (auto_now and the like) instead of reading the attribute.
    pre_save: bool
    #: Value types that need no conversion for this column (None always passes: SQL NULL).
    plain: tuple[type, ...]
    #: The column's value travels in a JSON document as it is (a date and time as ISO 8601 text).
    as_json: bool = False


class Plan:
    """How Email rows are inserted on one database: columns, value conversion and statement texts."""

    def __init__(self, alias: str, vendor: str, columns: tuple[_Column, ...]) -> None:
        connection = connections[alias]
        quote = connection.ops.quote_name
        self.alias, self.vendor, self.columns = alias, vendor, columns
        pk = Email._meta.pk
        assert pk is not None and pk.column is not None
        self.pk_attname = pk.attname
        # Names from the models, quoted: no caller's text is ever part of these statements.
        names = ", ".join(quote(str(column.field.column)) for column in columns)
        self._head = f"INSERT INTO {quote(Email._meta.db_table)} ({names})"
        self._returning = f" RETURNING {quote(pk.column)}"
        listed_table = quote(DoNotSendEntry._meta.db_table)
        self._listed = f"SELECT 1 FROM {listed_table} WHERE {quote('address')} IN "  # noqa: S608
        #: Returned by a checking INSERT: whether the list is empty (read by the same statement).
        self._empty = f"NOT EXISTS (SELECT 1 FROM {listed_table})"  # noqa: S608
        casts = []
        for column in columns:
            if vendor == "postgresql" and type(column.field) not in _TEXT:
                # A SELECT list's NULL is text to PostgreSQL unless cast to the column's type.
                casts.append(f"%s::{column.field.db_type(connection)}")
            else:
                casts.append("%s")
        self._select_list = ", ".join(casts)
        self._values_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        #: Rows per multi-row INSERT (the database's limit on parameters).
        self.batch = max(1, connection.ops.bulk_batch_size([c.field for c in columns], [None] * 500))
        #: PostgreSQL: every row of a send_many in one JSON parameter (json_populate_recordset), when
        #: every column can travel in JSON. A statement with thousands of placeholders costs more to
        #: prepare on the client than the rows themselves (psycopg parses such a query each time).
        self.json_sql = None
        if vendor == "postgresql" and all(column.as_json for column in columns):
            table = quote(Email._meta.db_table)
            self.json_sql = (
                f"{self._head} SELECT {names} FROM json_populate_recordset(NULL::{table}, %s){self._returning}"  # noqa: S608
            )
        #: PostgreSQL with psycopg 3: the same rows by ``COPY``, with ids from the sequence (see copy_rows).
        self.copy_sql = None
        driver = getattr(getattr(connection, "Database", None), "__name__", "")
        if self.json_sql and driver == "psycopg":  # psycopg 3: cursor.copy()
            copied = ", ".join(quote(str(name)) for name in (pk.column, *(c.field.column for c in columns)))
            self.copy_sql = f"COPY {quote(Email._meta.db_table)} ({copied}) FROM STDIN"
        #: JSON columns (each with Django's encoder: see _plan), sent as their json.dumps text.
        self._json_indexes = frozenset(i for i, c in enumerate(columns) if _plain_json(c.field))
        self._aware_passes = vendor == "postgresql"
        self._fetch = operator.attrgetter(*(column.attname for column in columns))
        self._fields = tuple(column.field for column in columns)
        self._plains = tuple(column.plain for column in columns)
        self._names = tuple(column.field.column for column in columns)
        self._pre_saved = tuple((index, column.field) for index, column in enumerate(columns) if column.pre_save)
        self._single: dict[tuple[int, bool, bool], str] = {}
        self._many: dict[int, str] = {}

    def row(self, email: Email) -> list[Any]:
        """The email's column values as Django's INSERT would send them.

        Except that a JSON column's value is its ``json.dumps`` text (what
        Django's JSONField stores; the column's type reads it) and, on
        PostgreSQL, a datetime with a time zone passes as it is (Django's
        conversion returns it unchanged there).
        """
        connection = connections[self.alias]
        values = self._values(email)
        fields, plains, json_indexes, aware = self._fields, self._plains, self._json_indexes, self._aware_passes
        for index, value in enumerate(values):
            if value is None or type(value) in plains[index]:
                continue
            if index in json_indexes:
                values[index] = json.dumps(value)
            elif not (aware and type(value) is datetime.datetime and value.tzinfo is not None):
                values[index] = fields[index].get_db_prep_save(value, connection)
        return values

    def json_rows(self, emails: Sequence[Email]) -> str:
        """The emails' rows as one JSON document of objects keyed by column, for :attr:`json_sql`."""
        connection = connections[self.alias]
        fields, plains, names = self._fields, self._plains, self._names
        rows = []
        for email in emails:
            values = self._values(email)
            for index, value in enumerate(values):
                if value is None or type(value) in plains[index]:
                    continue
                if isinstance(value, datetime.datetime):
                    values[index] = value.isoformat()
                elif plains[index]:
                    values[index] = fields[index].get_db_prep_save(value, connection)  # e.g. a lazy translation
            rows.append(dict(zip(names, values, strict=True)))
        # Characters as they are (no escapes): the server converts them like any text it receives.
        return json.dumps(rows, ensure_ascii=False)

    def copy_rows(self, emails: Sequence[Email], ids: Sequence[int]) -> Iterator[list[Any]]:
        """Each email's id and column values (:meth:`row`) for :attr:`copy_sql`."""
        for pk, email in zip(ids, emails, strict=True):
            yield [pk, *self.row(email)]

    def _values(self, email: Email) -> list[Any]:
        """The email's attribute per column, through ``pre_save`` where the field has its own (auto_now)."""
        values = list(self._fetch(email))
        for index, field in self._pre_saved:
            values[index] = field.pre_save(email, True)
        return values

    def single_sql(self, keys: int, notify: bool, report_empty: bool = False) -> str:
        """INSERT one row unless one of ``keys`` addresses is listed; return its id (and send the NOTIFY).

        With ``report_empty`` the row returned ends with whether the list is
        empty; with ``keys`` 0 the row goes in unchecked (the list is known empty).
        """
        sql = self._single.get((keys, notify, report_empty))
        if sql is None:
            if keys:
                # MariaDB wants a FROM before a WHERE; DUAL is its table of one row.
                source = " FROM DUAL" if self.vendor == "mysql" else ""
                listed = self._listed + "(" + ", ".join(["%s"] * keys) + ")"
                sql = f"{self._head} SELECT {self._select_list}{source} WHERE NOT EXISTS ({listed}){self._returning}"
            else:
                sql = f"{self._head} VALUES {self._values_row}{self._returning}"
            if notify:
                sql += f", {NOTIFY_CALL}"
            if report_empty:
                sql += f", {self._empty}"
            if len(self._single) < 64:
                self._single[keys, notify, report_empty] = sql
        return sql

    def many_sql(self, rows: int) -> str:
        """INSERT ``rows`` rows and return their ids, in order."""
        sql = self._many.get(rows)
        if sql is None:
            sql = f"{self._head} VALUES {', '.join([self._values_row] * rows)}{self._returning}"
            if len(self._many) < 4:
                self._many[rows] = sql
        return sql


def _plain_json(field: models.Field[Any, Any]) -> bool:
    """A JSONField whose stored text is ``json.dumps(value)``: no encoder, Django's own conversion."""
    kind = type(field)
    return (
        isinstance(field, models.JSONField)
        and field.encoder is None
        and kind.get_prep_value is models.JSONField.get_prep_value
        and kind.get_db_prep_value is models.JSONField.get_db_prep_value
        and kind.get_db_prep_save is models.JSONField.get_db_prep_save
    )


def plan_for(using: str) -> Plan | None:
    """The insert plan for ``using``, or None where Django's own insert must be used."""
    connection = connections[using]
    return _plan(using, connection.vendor, connection.features.can_return_rows_from_bulk_insert)


@functools.cache
def _plan(using: str, vendor: str, returning: bool) -> Plan | None:
    meta = Email._meta
    columns = []
    for field in meta.local_concrete_fields:
        if field is meta.auto_field:
            continue
        if field.has_db_default() or field.generated or hasattr(field, "get_placeholder"):
            return None  # Django builds these values itself: keep its INSERT
        plain: tuple[type, ...] = ()
        if type(field) in _TEXT:
            plain = (str,)
        elif type(field) in _INTEGER:
            plain = (int,)
        overrides_pre_save = type(field).pre_save is not models.Field.pre_save
        if type(field) is models.DateTimeField and not (field.auto_now or field.auto_now_add):
            overrides_pre_save = False  # its pre_save reads the attribute unless it sets the time
        as_json = bool(plain) or type(field) is models.DateTimeField
        if isinstance(field, models.JSONField):
            as_json = field.encoder is None  # the text Django would store is json.dumps(value)
        elif isinstance(field, models.ForeignKey):
            as_json = type(field.target_field) in (models.AutoField, models.BigAutoField)
        columns.append(_Column(field.attname, field, overrides_pre_save, plain, as_json))
    if not returning or meta.auto_field is None:
        return None
    return Plan(using, vendor, tuple(columns))


def unlisted_keys(email: Email) -> list[str]:
    """The do-not-send keys of the email's recipients, sorted, each once."""
    return sorted({do_not_send_key(address) for address in considered(email)})


def store_single(email: Email) -> list[Screened] | None:
    """Store one unsaved email (no attachments) as ``save()`` would, checking the do-not-send list on the way.

    Return what the list did (empty when none of its recipients is listed,
    the common case: one statement), or None where this database needs
    Django's own insert (nothing was done then). ``pre_save`` and ``post_save``
    are sent as ``save()`` sends them.
    """
    using = router.db_for_write(Email, instance=email)
    plan = plan_for(using)
    if plan is None or router.db_for_read(DoNotSendEntry) != using:
        return None  # Django's insert; or the list lives in another database than the emails
    keys = unlisted_keys(email)
    if not keys or len(keys) > DoNotSendQuerySet.CHUNK:
        return None  # nobody to check (prepare refuses that), or more addresses than one query takes
    pre_save.send(sender=Email, instance=email, raw=False, using=using, update_fields=None)
    screened: list[Screened] = []
    if not _insert_unless_listed(email, plan, keys):
        # A recipient is listed: take it off (or fail the email), then store it with its Log rows.
        screened = screen([email])
        with transaction.atomic(using=using):
            insert_many([email], plan)
            if screened:
                Log.objects.using(using).bulk_create(screened_logs(screened))
            notify_queued(using)
    email._state.adding = False
    email._state.db = using
    post_save.send(sender=Email, instance=email, created=True, update_fields=None, raw=False, using=using)
    return screened


def _insert_unless_listed(email: Email, plan: Plan, keys: list[str]) -> bool:
    """One statement: insert the email unless one of ``keys`` is listed (and NOTIFY); True if inserted.

    While the list is known to be empty the statement does not check it;
    otherwise it reports whether the list is empty, remembered for
    ``DO_NOT_SEND_EMPTY_CACHE`` seconds.
    """
    using = plan.alias
    notify = needs_notify(using)
    remember = po_settings.DO_NOT_SEND_EMPTY_CACHE
    if remember and known_empty(using):
        keys, remember = [], 0.0
    generation = list_generation()
    with transaction.mark_for_rollback_on_error(using), _cursor(using) as cursor:
        cursor.execute(plan.single_sql(len(keys), notify, bool(remember)), [*plan.row(email), *keys])
        row = cursor.fetchone()
    if row is None:
        forget_empty()  # found a listed recipient: the list is not empty
        return False
    if notify:
        mark_notified(using)
    if remember and row[-1]:
        found_empty(using, remember, generation)
    setattr(email, plan.pk_attname, row[0])
    return True


def _cursor(using: str) -> Any:
    """A cursor of ``using`` (Django's wrapper): on PostgreSQL one that binds parameters on the server, unprepared."""
    connection = connections[using]
    unprepared = _unprepared_class() if connection.vendor == "postgresql" else None
    if unprepared is None or connection.settings_dict["OPTIONS"].get("server_side_binding") is True:
        return connection.cursor()  # with server_side_binding, psycopg prepares as the project has it
    # What connection.cursor() does, with another psycopg cursor class.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = unprepared(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


@functools.cache
def _unprepared_class() -> Any:
    """psycopg 3's cursor binding parameters on the server (Django's, for server_side_binding), never preparing.

    None with psycopg 2. Never prepared: an unnamed statement, which a pooler in
    transaction mode (PgBouncer) passes on like any query; a named prepared one
    it would send to whichever server connection the next transaction gets.
    """
    from django.db.backends.postgresql import base

    server_binding: Any = getattr(base, "ServerBindingCursor", None)
    if server_binding is None:
        return None

    class Unprepared(server_binding):  # type: ignore[misc,valid-type]
        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: Any = None) -> Any:
            return super().execute(query, params, prepare=False, binary=binary)

    return Unprepared


def insert_rows(emails: Sequence[Email]) -> None:
    """Insert unsaved emails (no signals, as ``bulk_create``): multi-row INSERTs where the plan allows."""
    using = router.db_for_write(Email)
    plan = plan_for(using)
    if plan is None:
        Email.objects.using(using).bulk_create(emails)
    else:
        insert_many(emails, plan)


def insert_many(emails: Sequence[Email], plan: Plan) -> None:
    """Insert unsaved emails with one multi-row INSERT per ``plan.batch`` rows (no signals, as ``bulk_create``)."""
    using = plan.alias
    batch = _JSON_BATCH if plan.json_sql else plan.batch
    with connections[using].cursor() as cursor:
        if plan.copy_sql and len(emails) >= _COPY_MIN and _copy(cursor, plan, emails):
            return
        for start in range(0, len(emails), batch):
            chunk = emails[start : start + batch]
            if plan.json_sql:
                cursor.execute(plan.json_sql, [plan.json_rows(chunk)])
            else:
                params: list[Any] = []
                for email in chunk:
                    params += plan.row(email)
                cursor.execute(plan.many_sql(len(chunk)), params)
            _saved(chunk, [value for (value,) in cursor.fetchall()], plan)


def _copy(cursor: Any, plan: Plan, emails: Sequence[Email]) -> bool:
    """Insert ``emails`` with one ``COPY`` (ids from the sequence first); False where the table has no sequence."""
    table, column = Email._meta.db_table, Email._meta.pk.column  # type: ignore[union-attr]
    cursor.execute(_IDS_SQL, [table, column, len(emails)])
    ids = [value for (value,) in cursor.fetchall()]
    if ids[0] is None:
        return False  # an id column without a sequence (not a table Django made): the INSERT
    rows = plan.copy_rows(emails, ids)
    database = cursor.db

    def copy(sql: str, params: Any, many: bool, context: dict[str, Any]) -> None:
        database.validate_no_broken_transaction()
        with database.wrap_database_errors, cursor.cursor.copy(sql) as copying:
            for row in params:
                copying.write_row(row)

    logged = cursor.debug_sql(plan.copy_sql, None) if hasattr(cursor, "debug_sql") else nullcontext()
    with logged:
        # Through the execute wrappers, as cursor.execute() would go (a COPY has no execute of its own).
        cursor._execute_with_wrappers(plan.copy_sql, rows, many=True, executor=copy)
    _saved(emails, ids, plan)
    return True


def _saved(emails: Sequence[Email], ids: Sequence[int], plan: Plan) -> None:
    """Give inserted emails their ids and mark them saved in ``plan``'s database, as ``bulk_create`` does."""
    for email, value in zip(emails, ids, strict=True):
        setattr(email, plan.pk_attname, value)
        email._state.adding = False
        email._state.db = plan.alias
