"""Queue maintenance: put failed mail back in the queue, purge old delivery logs, delete old mail.

The library behind django-mailer's ``retry_deferred`` and ``purge_mail_log``
commands and django-post_office's ``cleanup_mail``. All work in batches of ids, each batch one short statement, so
neither holds long locks on a busy queue.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from .exceptions import InvalidArgument
from .models import STATUS, Attachment, Email, Log, get_attachment_storage

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": "seconds", "m": "minutes", "": "minutes", "h": "hours", "d": "days", "w": "weeks"}

#: ``purge_mail_log -r`` choices and the Log statuses each one deletes.
LOG_RESULTS: dict[str, tuple[int, ...]] = {
    "success": (STATUS.sent,),
    "failure": (STATUS.failed,),
    "all": (STATUS.sent, STATUS.failed),
}


def parse_age(value: str | int) -> datetime.timedelta:
    """Read an age such as ``'90'`` (minutes), ``'30s'``, ``'15m'``, ``'2h'``, ``'3d'`` or ``'1w'``."""
    match = _AGE.match(str(value))
    if match is None:
        raise InvalidArgument(
            "age", value, "is not an age: use a whole number with an optional unit s, m, h, d or w (minutes if none)"
        )
    amount, unit = match.groups()
    return datetime.timedelta(**{_AGE_UNITS[unit.lower()]: int(amount)})


@dataclass(frozen=True)
class FailedMailFilter:
    """Which failed emails to requeue; every criterion left as None matches everything."""

    older_than: datetime.timedelta | None = None
    newer_than: datetime.timedelta | None = None
    template: str | None = None
    error: str | None = None

    def queryset(self, now: datetime.datetime | None = None) -> QuerySet[Email]:
        now = now or timezone.now()
        emails = Email.objects.filter(status=STATUS.failed)
        # An email past its expiry would only fail again as expired at the next run.
        emails = emails.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.older_than is not None:
            emails = emails.filter(last_updated__lte=now - self.older_than)
        if self.newer_than is not None:
            emails = emails.filter(last_updated__gte=now - self.newer_than)
        if self.template:
            # Translations carry their base template's name, so this matches every language.
            emails = emails.filter(template__name=self.template)
        if self.error:
            latest = Log.objects.filter(email=OuterRef("pk")).order_by("-date", "-id").values("id")[:1]
            matching = Log.objects.filter(Q(exception_type__icontains=self.error) | Q(message__icontains=self.error))
            emails = emails.annotate(latest_log=Subquery(latest)).filter(latest_log__in=matching.values("id"))
        return emails


def _id_batches(queryset: QuerySet, batch_size: int) -> Iterator[list[int]]:
    """Ids of ``queryset`` in ascending batches; each batch is re-read after the previous one is handled."""
    last_id = 0
    while True:
        ids = list(queryset.filter(id__gt=last_id).order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def requeue_failed(selection: FailedMailFilter | None = None, *, dry_run: bool = False, batch_size: int = 1000) -> int:
    """Put failed emails back in the queue as new; return how many (would be) requeued.

    Each email gets ``status=queued``, its retry count reset to 0, no
    ``scheduled_time`` (due at once) and no claim. Only ``failed`` emails are
    touched: the UPDATE itself checks the status again, so an email sent or
    claimed meanwhile is left alone.
    """
    if batch_size < 1:
        raise InvalidArgument("batch_size", batch_size, "must be at least 1")
    selected = (selection or FailedMailFilter()).queryset()
    if dry_run:
        return selected.count()
    requeued = 0
    for ids in _id_batches(selected, batch_size):
        requeued += Email.objects.filter(id__in=ids, status=STATUS.failed).update(
            status=STATUS.queued,
            number_of_retries=0,
            scheduled_time=None,
            claimed_by="",
            lease_expires_at=None,
            last_updated=timezone.now(),
        )
    return requeued


def purge_logs(days: int, result: str = "success", *, dry_run: bool = False, batch_size: int = 1000) -> int:
    """Delete Log rows older than ``days`` days whose result is ``result``; return how many (would be) deleted.

    ``result`` is ``'success'`` (sent attempts, django-mailer's default),
    ``'failure'`` or ``'all'``. The emails themselves are kept.
    """
    if days < 0:
        raise InvalidArgument("days", days, "must be zero or more")
    if result not in LOG_RESULTS:
        raise InvalidArgument("result", result, f"is not one of {', '.join(LOG_RESULTS)}")
    if batch_size < 1:
        raise InvalidArgument("batch_size", batch_size, "must be at least 1")
    old = Log.objects.filter(date__lt=timezone.now() - datetime.timedelta(days=days), status__in=LOG_RESULTS[result])
    if dry_run:
        return old.count()
    deleted = 0
    for ids in _id_batches(old, batch_size):
        deleted += Log.objects.filter(id__in=ids).delete()[0]
    return deleted


# -- deleting old mail (cleanup_mail): sent and failed only, never queued or scheduled mail


#: What cleanup deletes once old: mail no worker will send any more.
FINISHED = (STATUS.sent, STATUS.failed, STATUS.cancelled)


def cleanup_expired_mails(
    cutoff: datetime.datetime, delete_attachments: bool = True, batch_size: int = 1000
) -> tuple[int, int]:
    """Delete sent, failed and cancelled emails created before ``cutoff``, in batches.

    Returns ``(emails deleted, attachments deleted)``. Attachments no longer used
    by any email are deleted with their files when ``delete_attachments`` is True
    (a file shared by another attachment row is kept).
    """
    emails_deleted = 0
    finished = Email.objects.filter(created__lt=cutoff, status__in=FINISHED)
    while True:
        ids = list(finished.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            Email.objects.filter(id__in=ids, status__in=FINISHED).delete()
        emails_deleted += len(ids)
    attachments_deleted = delete_orphan_attachments(batch_size) if delete_attachments else 0
    return emails_deleted, attachments_deleted


def delete_orphan_attachments(batch_size: int = 1000, grace: datetime.timedelta | None = None) -> int:
    """Delete attachments no email uses and none attached for ``grace`` (``Attachment.ORPHAN_GRACE``); return how many.

    Safe beside emails being queued that reuse a row: each batch is one DELETE
    that checks again, row by row, that no email links to it and that its
    ``last_used`` is old (enqueueing refreshes it, under a row lock, before it
    links the row). A file is deleted after the DELETE commits, and only when
    no remaining row names it.
    """
    cutoff = timezone.now() - (Attachment.ORPHAN_GRACE if grace is None else grace)
    candidates = Attachment.objects.filter(emails__isnull=True, last_used__lt=cutoff)
    deleted = 0
    last_id = 0
    while True:
        batch = list(candidates.filter(id__gt=last_id).order_by("id").values_list("id", "file")[:batch_size])
        if not batch:
            return deleted
        last_id = batch[-1][0]
        deleted += _delete_unused([pk for pk, _name in batch], cutoff)
        names = {name for _pk, name in batch if name}
        transaction.on_commit(partial(_delete_unreferenced_files, names), using=router.db_for_write(Attachment))


def _delete_unused(ids: list[int], cutoff: datetime.datetime) -> int:
    """One conditional DELETE: the rows among ``ids`` that no email links to and that were last used before ``cutoff``.

    The conditions are in the statement itself, so a row an enqueue is linking
    right now is left alone: its refreshed ``last_used`` is what the DELETE
    sees once the enqueue's row lock is released. (Django's ``delete()`` would
    read the rows first, then delete them by id.)
    """
    connection = connections[router.db_for_write(Attachment)]
    through = Attachment.emails.through
    table, pk, last_used = (_quoted(connection, Attachment, name) for name in (None, "id", "last_used"))
    links, link_column = _quoted(connection, through), _quoted(connection, through, "attachment")
    placeholders = ", ".join(["%s"] * len(ids))
    # Names quoted by the backend, values passed as parameters.
    sql = (
        f"DELETE FROM {table} WHERE {pk} IN ({placeholders}) AND {last_used} < %s "  # noqa: S608
        f"AND NOT EXISTS (SELECT 1 FROM {links} WHERE {links}.{link_column} = {table}.{pk})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ids, connection.ops.adapt_datetimefield_value(cutoff)])
        return max(cursor.rowcount, 0)


def _quoted(connection: BaseDatabaseWrapper, model: type[Model], field: str | None = None) -> str:
    """A model's table, or one of its columns, quoted for ``connection``."""
    if field is None:
        return str(connection.ops.quote_name(model._meta.db_table))
    column: Any = model._meta.get_field(field)
    return str(connection.ops.quote_name(column.column))


def _delete_unreferenced_files(names: set[str]) -> None:
    """Delete the files of deleted rows that no remaining row names (the same content under another name shares one)."""
    still_used = set(Attachment.objects.filter(file__in=names).values_list("file", flat=True))
    storage = get_attachment_storage()
    for name in sorted(names - still_used):
        storage.delete(name)


def cutoff_for_days(days: int) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days)
