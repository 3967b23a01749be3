"""django-mailer's three tables, read with SQL in batches (django-mailer itself is never imported).

``mailer_message`` (the queue), ``mailer_messagelog`` (one row per attempt) and
``mailer_dontsendentry`` (its don't-send list), as django-mailer 2.x's
migrations make them; columns that older versions lack (``retry_count``,
``message_id``) read as their defaults.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.dateparse import parse_datetime

MESSAGES = "mailer_message"
LOGS = "mailer_messagelog"
ENTRIES = "mailer_dontsendentry"
TABLES = (ENTRIES, MESSAGES, LOGS)

#: Each table's columns: required ones first, then optional ones with their default.
COLUMNS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    MESSAGES: (("id", "message_data", "when_added", "priority"), {"retry_count": 0}),
    LOGS: (
        ("id", "message_data", "when_added", "priority", "when_attempted", "result", "log_message"),
        {"message_id": None},
    ),
    ENTRIES: (("id", "to_address", "when_added"), {}),
}

#: django-mailer's priorities (mailer.models.PRIORITY_*).
HIGH, MEDIUM, LOW, DEFERRED = 1, 2, 3, 4
#: django-mailer's log results (mailer.models.RESULT_*).
RESULT_SUCCESS, RESULT_DONT_SEND, RESULT_FAILURE = "1", "2", "3"


@dataclass
class Row:
    """One row of a django-mailer table, by column name (dates made datetimes)."""

    table: str
    values: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.values["id"])

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


class MailerTables:
    """django-mailer's tables in one database (``connection``)."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        with connection.cursor() as cursor:
            names = set(connection.introspection.table_names(cursor))
            self.present = [table for table in TABLES if table in names]
            self.columns = {table: self._columns(cursor, table) for table in self.present}

    def _columns(self, cursor: Any, table: str) -> list[str]:
        found = {column.name for column in self.connection.introspection.get_table_description(cursor, table)}
        required, optional = COLUMNS[table]
        missing = [name for name in required if name not in found]
        if missing:
            raise ValueError(f"{table} has no column {', '.join(missing)}: it is not a django-mailer table")
        return [*required, *(name for name in optional if name in found)]

    def batches(self, table: str, size: int) -> Iterator[list[Row]]:
        """The table's rows in id order, ``size`` at a time (keyset paging: no row is read twice or missed)."""
        if table not in self.present:
            return
        quote = self.connection.ops.quote_name
        columns = self.columns[table]
        _required, optional = COLUMNS[table]
        sql = (
            f"SELECT {', '.join(quote(name) for name in columns)} FROM {quote(table)} "  # noqa: S608 - names only
            f"WHERE {quote('id')} > %s ORDER BY {quote('id')}"
        )
        last = 0
        while True:
            with self.connection.cursor() as cursor:
                cursor.execute(f"{sql} LIMIT {int(size)}", [last])
                fetched = cursor.fetchall()
            if not fetched:
                return
            rows = []
            for values in fetched:
                row = {**optional, **dict(zip(columns, values, strict=True))}
                for name in ("when_added", "when_attempted"):
                    if name in row:
                        row[name] = self.datetime(row[name])
                rows.append(Row(table, row))
            last = rows[-1].id
            yield rows

    def count(self, table: str) -> int:
        if table not in self.present:
            return 0
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {self.connection.ops.quote_name(table)}")  # noqa: S608 - a name
            return int(cursor.fetchone()[0])

    def datetime(self, value: Any) -> datetime.datetime | None:
        """A date as the database driver returned it, made the datetime Django's own fields would give."""
        convert = getattr(self.connection.ops, "convert_datetimefield_value", None)
        if convert is not None and value is not None:
            value = convert(value, None, self.connection)
        if isinstance(value, str):
            value = parse_datetime(value)
        if isinstance(value, datetime.datetime) and settings.USE_TZ and timezone.is_naive(value):
            value = timezone.make_aware(value, datetime.UTC)
        return value
