"""Importing what django-mailer left: its do-not-send list, its queue and its message logs.

Each table is read in batches (:mod:`~post_office.switch.mailer_tables`); each
batch is written in one transaction with an :class:`~post_office.models.ImportedRow`
per source row, so a second run, or a run after a crash, imports nothing
twice. Messages are unpickled with an unpickler that builds only a Django
message (:mod:`~post_office.switch.mailer_pickle`) and queued exactly as the
queueing backend queues a message (the same validation, attachments stored
once); a row that cannot be read or converted is reported with its id and
reason, never fatal.

What becomes of each row:

* a do-not-send entry: an entry of our list (reason ``django-mailer``);
* a queued message: a queued email, its priority mapped (django-mailer's high
  1, medium 2, low 3 to our high, medium, low); a deferred one (priority 4)
  or one retried before: a requeued email (medium), its ``retry_count`` kept
  as ``number_of_retries``;
* a message log: a Log row (its date, result and text) on the email of its
  message: the one imported from the queue, or one rebuilt from the log's own
  copy of the message (sent if any attempt succeeded, else failed). A success
  logged for a message still queued marks that email sent, so it is not sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Case, Value, When

from ..choices import STATUS
from ..enqueue.attachments import store_attachments
from ..exceptions import InvalidEmail
from ..models import DoNotSendEntry, Email, ImportedRow, do_not_send_key
from ..notify import notify_queued
from ..validation import parse_address
from .mailer_convert import Converted, convert
from .mailer_logs import LogImport
from .mailer_pickle import Unreadable
from .mailer_tables import DEFERRED, ENTRIES, LOGS, MESSAGES, MailerTables, Row


@dataclass
class Tally:
    """What became of one table's rows."""

    imported: int = 0
    already_imported: int = 0
    #: (row id, why) of each row that could not be read or converted.
    unreadable: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Summary:
    """The outcome of an import (or of a dry run: what it would do)."""

    database: str
    dry_run: bool
    entries: Tally = field(default_factory=Tally)
    messages: Tally = field(default_factory=Tally)
    logs: Tally = field(default_factory=Tally)
    #: Entries whose address was already on our list.
    already_listed: int = 0
    #: Imported messages by state: queued, requeued.
    queued: int = 0
    requeued: int = 0
    #: Emails rebuilt from the logs of messages no longer queued, by final state.
    rebuilt_sent: int = 0
    rebuilt_failed: int = 0
    #: Queued messages a logged success shows were sent already (imported as sent).
    found_sent: int = 0
    missing_tables: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        done = "to import" if self.dry_run else "imported"
        head = f"django-mailer's tables in database {self.database!r}"
        lines = [f"{head} (dry run: nothing was written):" if self.dry_run else f"{head}:"]
        entries, messages, logs = self.entries, self.messages, self.logs
        lines.append(
            f"  do-not-send entries: {entries.imported} {done}, {self.already_listed} already on the list, "
            f"{entries.already_imported} already imported, {len(entries.unreadable)} unreadable"
        )
        lines.append(
            f"  messages: {messages.imported} {done} ({self.queued} queued, {self.requeued} requeued after "
            f"deferral or retry), {messages.already_imported} already imported, {len(messages.unreadable)} unreadable"
        )
        if self.found_sent:
            lines.append(f"    of which {self.found_sent} {done} as sent: a logged success shows they were sent")
        lines.append(
            f"  message logs: {logs.imported} {done}, with {self.rebuilt_sent + self.rebuilt_failed} emails rebuilt "
            f"from them ({self.rebuilt_sent} sent, {self.rebuilt_failed} failed), {logs.already_imported} already "
            f"imported, {len(logs.unreadable)} unreadable"
        )
        for table in self.missing_tables:
            lines.append(f"  {table}: no such table, nothing {done}")
        unreadable = [
            (table, row, why)
            for table, tally in ((ENTRIES, entries), (MESSAGES, messages), (LOGS, logs))
            for row, why in tally.unreadable
        ]
        if unreadable:
            lines.append("Rows that could not be read (not imported):")
            lines += [f"  {table} #{row}: {why}" for table, row, why in unreadable]
        return lines


class MailerImport:
    """One import run; ``run()`` returns its :class:`Summary`."""

    def __init__(
        self,
        *,
        database: str = "default",
        batch_size: int = 500,
        dry_run: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.tables = MailerTables(connections[database])
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress or (lambda text: None)
        self.summary = Summary(database=database, dry_run=dry_run)
        self.summary.missing_tables = [table for table in (ENTRIES, MESSAGES, LOGS) if table not in self.tables.present]
        #: Each imported message's email (or, in a dry run, its unsaved email), by message key.
        self.known: dict[str, Email] = {}
        self.using = router.db_for_write(Email)

    def run(self) -> Summary:
        self.import_entries()
        self.import_messages()
        LogImport(self).run()
        return self.summary

    # -- shared by the three tables ------------------------------------------------

    def batches(self, table: str, tally: Tally) -> Iterable[list[Row]]:
        """The table's rows not imported before, batch by batch; the others are counted as already imported."""
        for number, rows in enumerate(self.tables.batches(table, self.batch_size), start=1):
            done = set(
                ImportedRow.objects.filter(source=table, source_id__in=[row.id for row in rows]).values_list(
                    "source_id", flat=True
                )
            )
            tally.already_imported += len(done)
            self.progress(f"{table}: batch {number}, {len(rows)} rows ({len(done)} imported before)")
            yield [row for row in rows if row.id not in done]

    def record(self, table: str, rows: Iterable[tuple[Row, Email | None, str]]) -> None:
        """Remember imported rows (source row, the email it went to, its message key)."""
        ImportedRow.objects.bulk_create(
            ImportedRow(source=table, source_id=row.id, email=email, key=key) for row, email, key in rows
        )

    def store_emails(self, converted: list[tuple[Converted, Any, Any]]) -> None:
        """Insert emails with their attachments, and give them their own creation and update times."""
        emails = [item.email for item, _created, _updated in converted]
        Email.objects.bulk_create(emails)
        for start in range(0, len(converted), 100):
            chunk = converted[start : start + 100]
            ids = [item.email.pk for item, _created, _updated in chunk]
            Email.objects.filter(pk__in=ids).update(
                created=Case(*(When(pk=item.email.pk, then=Value(created)) for item, created, _ in chunk)),
                last_updated=Case(*(When(pk=item.email.pk, then=Value(updated)) for item, _, updated in chunk)),
            )
        store_attachments([(item.email, item.prepared.attachments) for item, _c, _u in converted])

    # -- do-not-send entries -------------------------------------------------------

    def import_entries(self) -> None:
        tally = self.summary.entries
        seen: set[str] = set()
        for rows in self.batches(ENTRIES, tally):
            checked = []
            for row in rows:
                try:
                    checked.append((row, do_not_send_key(parse_address(row["to_address"], "to_address"))))
                except InvalidEmail as error:
                    tally.unreadable.append((row.id, f"is not an address we can list: {error}"))
            listed = DoNotSendEntry.objects.listed(key for _row, key in checked)
            new = []
            for row, key in checked:
                if key in listed or key in seen:
                    self.summary.already_listed += 1
                    continue
                seen.add(key)
                new.append(
                    DoNotSendEntry(
                        address=key,
                        reason=DoNotSendEntry.Reason.mailer,
                        created=row["when_added"],
                        note=f"django-mailer DontSendEntry #{row.id}",
                    )
                )
            tally.imported += len(new)
            if not self.dry_run and checked:
                with transaction.atomic(using=self.using):
                    DoNotSendEntry.objects.bulk_create(new)
                    self.record(ENTRIES, ((row, None, "") for row, _key in checked))

    # -- the queue -----------------------------------------------------------------

    def import_messages(self) -> None:
        tally, summary = self.summary.messages, self.summary
        for rows in self.batches(MESSAGES, tally):
            converted: list[tuple[Row, Converted]] = []
            for row in rows:
                try:
                    item = convert(row)
                except Unreadable as error:
                    tally.unreadable.append((row.id, str(error)))
                    continue
                retries = max(int(row["retry_count"] or 0), 0)
                requeued = row["priority"] == DEFERRED or retries > 0
                item.email.status = STATUS.requeued if requeued else STATUS.queued
                item.email.number_of_retries = retries
                summary.requeued += requeued
                summary.queued += not requeued
                self.known.setdefault(item.key, item.email)
                converted.append((row, item))
            tally.imported += len(converted)
            if converted and not self.dry_run:
                with transaction.atomic(using=self.using):
                    self.store_emails([(item, row["when_added"], row["when_added"]) for row, item in converted])
                    self.record(MESSAGES, ((row, item.email, item.key) for row, item in converted))
                    notify_queued()


__all__ = ["MailerImport", "Summary", "Tally"]
