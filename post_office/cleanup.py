"""Deleting old mail: sent and failed only, never queued or scheduled mail."""

from __future__ import annotations

import datetime

from django.db import transaction
from django.utils import timezone

from .models import STATUS, Attachment, Email


def cleanup_expired_mails(
    cutoff: datetime.datetime, delete_attachments: bool = True, batch_size: int = 1000
) -> tuple[int, int]:
    """Delete sent and failed emails created before ``cutoff``, in batches.

    Returns ``(emails deleted, attachments deleted)``. Attachments no longer used
    by any email are deleted with their files when ``delete_attachments`` is True
    (a file shared by another attachment row is kept).
    """
    emails_deleted = 0
    finished = Email.objects.filter(created__lt=cutoff, status__in=(STATUS.sent, STATUS.failed))
    while True:
        ids = list(finished.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            Email.objects.filter(id__in=ids, status__in=(STATUS.sent, STATUS.failed)).delete()
        emails_deleted += len(ids)
    attachments_deleted = delete_orphan_attachments(batch_size) if delete_attachments else 0
    return emails_deleted, attachments_deleted


def delete_orphan_attachments(batch_size: int = 1000) -> int:
    deleted = 0
    while True:
        orphans = list(Attachment.objects.filter(emails__isnull=True).order_by("id")[:batch_size])
        if not orphans:
            return deleted
        files = {a.file.name for a in orphans}
        Attachment.objects.filter(id__in=[a.pk for a in orphans], emails__isnull=True).delete()
        still_used = set(Attachment.objects.filter(file__in=files).values_list("file", flat=True))
        for attachment in orphans:
            name = attachment.file.name
            if name and name not in still_used:
                still_used.add(name)  # delete each file once
                attachment.file.storage.delete(name)
        deleted += len(orphans)


def cutoff_for_days(days: int) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days)
