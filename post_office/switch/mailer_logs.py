"""django-mailer's message logs imported as Log rows, each on the email of its message.

A log row carries its own copy of the message (``message_data``, unless
``MAILER_EMAIL_LOG_MESSAGE_DATA`` was off) and the Message-ID it was sent
with. It belongs to the email imported from the same message (found by
:func:`~post_office.switch.mailer.message_key`, in this run or an earlier
one; by Message-ID when the log holds no copy), or, for a message that is no
longer queued, to an email rebuilt from the first of its logs: sent once any
attempt succeeded, else failed. The dates are django-mailer's: the email's
creation is when the message was added, each Log row's date when it was tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import connections, transaction

from ..choices import CLAIMABLE, STATUS
from ..models import Email, ImportedRow, Log
from .mailer_convert import Converted, convert
from .mailer_pickle import Unreadable
from .mailer_tables import LOGS, RESULT_DONT_SEND, RESULT_SUCCESS, Row


class Run(Protocol):
    """What the logs need of the import run (:class:`~post_office.switch.mailer.MailerImport`)."""

    summary: Any
    known: dict[str, Email]
    dry_run: bool
    using: str

    def batches(self, table: str, tally: Any) -> Iterable[list[Row]]: ...

    def record(self, table: str, rows: Iterable[tuple[Row, Email | None, str]]) -> None: ...

    def store_emails(self, converted: list[tuple[Converted, Any, Any]]) -> None: ...


#: The ``worker`` of imported Log rows: who made the attempt.
WORKER = "django-mailer"


@dataclass
class _Entry:
    """One log row to write: the email it goes on (saved or about to be), its result and text."""

    row: Row
    email: Email
    key: str


class LogImport:
    """The logs part of one import run (``MailerImport``)."""

    def __init__(self, run: Run) -> None:
        self.run_ = run
        self.summary = run.summary
        self.tally = run.summary.logs
        #: The emails rebuilt in this run (by id()), so that a later success moves them from failed to sent.
        self.rebuilt_now: set[int] = set()

    def run(self) -> None:
        for rows in self.run_.batches(LOGS, self.tally):
            self.batch(rows)

    def batch(self, rows: list[Row]) -> None:
        parsed: list[tuple[Row, Converted | None]] = []
        for row in rows:
            try:
                parsed.append((row, convert(row) if row["message_data"] else None))
            except Unreadable as error:
                self.tally.unreadable.append((row.id, str(error)))
        self._look_up([item.key for _row, item in parsed if item is not None])
        by_message_id = self._by_message_id([row for row, item in parsed if item is None])
        entries: list[_Entry] = []
        rebuilt: list[tuple[Converted, Row]] = []
        found_sent: dict[int, str | None] = {}
        for row, item in parsed:
            email = self.run_.known.get(item.key) if item is not None else self._with_message_id(row, by_message_id)
            if email is None and item is None:
                self.tally.unreadable.append(
                    (row.id, "holds no copy of its message and no imported email has its Message-ID")
                )
                continue
            if email is None:
                assert item is not None
                email = self._rebuild(item, row)
                rebuilt.append((item, row))
            elif row["result"] == RESULT_SUCCESS and email.status != STATUS.sent:
                self._found_sent(email, row, found_sent)
            entries.append(_Entry(row, email, item.key if item is not None else ""))
        self.tally.imported += len(entries)
        if entries and not self.run_.dry_run:
            with transaction.atomic(using=self.run_.using):
                self._write(entries, rebuilt, found_sent)

    def _look_up(self, keys: Sequence[str]) -> None:
        """Find the emails of earlier runs' messages among these keys (one query)."""
        wanted = sorted({key for key in keys if key not in self.run_.known})
        if not wanted:
            return
        rows = ImportedRow.objects.filter(key__in=wanted, email__isnull=False).select_related("email").order_by("id")
        for imported in rows:
            self.run_.known.setdefault(imported.key, imported.email)  # type: ignore[arg-type]

    def _by_message_id(self, rows: Sequence[Row]) -> dict[str, Email]:
        """Imported emails (in this run or before) with the Message-IDs of logs that hold no copy of their message."""
        ids = {row["message_id"] for row in rows if row["message_id"]}
        if not ids:
            return {}
        imported = ImportedRow.objects.filter(email__message_id__in=ids).select_related("email").order_by("id")
        found: dict[str, Email] = {}
        for item in imported:
            if item.email is not None and item.email.message_id:
                found.setdefault(item.email.message_id, item.email)
        return found

    def _with_message_id(self, row: Row, stored: dict[str, Email]) -> Email | None:
        """The email a log without a copy of its message belongs to: one of this run (so far), or of an earlier one."""
        message_id = row["message_id"]
        if not message_id:
            return None
        for email in self.run_.known.values():
            if email.message_id == message_id:
                return email
        return stored.get(message_id)

    def _rebuild(self, item: Converted, row: Row) -> Email:
        """An email for a message django-mailer no longer queues, made from this (its first) log row."""
        email = item.email
        email.status = STATUS.sent if row["result"] == RESULT_SUCCESS else STATUS.failed
        if row["result"] == RESULT_SUCCESS and row["message_id"]:
            email.message_id = str(row["message_id"])[:255]
        self.run_.known[item.key] = email
        self.rebuilt_now.add(id(email))
        if email.status == STATUS.sent:
            self.summary.rebuilt_sent += 1
        else:
            self.summary.rebuilt_failed += 1
        return email

    def _found_sent(self, email: Email, row: Row, found_sent: dict[int, str | None]) -> None:
        """A success logged for a message whose email is queued, or was rebuilt failed: it was sent after all."""
        if email.status in CLAIMABLE:
            self.summary.found_sent += 1
        elif id(email) in self.rebuilt_now:
            self.summary.rebuilt_failed -= 1
            self.summary.rebuilt_sent += 1
        email.status = STATUS.sent
        if row["message_id"]:
            email.message_id = str(row["message_id"])[:255]
        if email.pk is not None:
            found_sent[email.pk] = email.message_id

    def _write(self, entries: list[_Entry], rebuilt: list[tuple[Converted, Row]], found_sent: dict[int, Any]) -> None:
        if rebuilt:
            self.run_.store_emails([(item, row["when_added"], row["when_attempted"]) for item, row in rebuilt])
        for pk, message_id in found_sent.items():
            Email.objects.filter(pk=pk).exclude(status=STATUS.sent).update(status=STATUS.sent, message_id=message_id)
        _insert_logs(entries, self.run_.using)
        self.run_.record(LOGS, ((entry.row, entry.email, entry.key) for entry in entries))


def log_values(row: Row) -> tuple[int, str, str]:
    """A django-mailer log row's result as our Log's status, exception type and message."""
    text = str(row["log_message"] or "")
    if row["result"] == RESULT_SUCCESS:
        return STATUS.sent, "", text
    if row["result"] == RESULT_DONT_SEND:
        return (
            STATUS.failed,
            "DoNotSend",
            text or "django-mailer did not send it: every recipient was on its don't-send list",
        )
    return STATUS.failed, "", text


def _insert_logs(entries: list[_Entry], using: str) -> None:
    """Insert the Log rows with django-mailer's dates (Log.date is set on insert otherwise)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    columns = ("email", "date", "status", "exception_type", "message", "worker")
    names = ", ".join(quote(str(Log._meta.get_field(name).column)) for name in columns)  # type: ignore[union-attr]
    date = Log._meta.get_field("date")
    sql = f"INSERT INTO {quote(Log._meta.db_table)} ({names}) VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608
    values = []
    for entry in entries:
        status, kind, text = log_values(entry.row)
        when = date.get_db_prep_save(entry.row["when_attempted"], connection)  # type: ignore[union-attr]
        values.append((entry.email.pk, when, int(status), kind, text.replace("\x00", "\\x00"), WORKER))
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)
