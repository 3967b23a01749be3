"""Queued emails stored in the caller's transaction; the signal and 'now' delivery once it commits."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from ..choices import CLAIMABLE, PRIORITY, STATUS
from ..delivery.worker import Worker
from ..exceptions import InvalidArgument, InvalidEmail
from ..models import Email, Log
from ..notify import notify_queued
from ..rendering.lookup import TemplateLookup
from ..signals import email_queued
from . import commit
from .attachments import check_message_size, store_attachments
from .do_not_send import screen, screened_logs
from .insert import insert_rows, store_single
from .prepare import Prepared, prepare, template_names
from .request import EmailRequest


def lookup_for(requests: Sequence[EmailRequest]) -> TemplateLookup:
    """The database templates these requests name, fetched in one query."""
    return TemplateLookup(template_names(requests))


def queue(requests: Sequence[EmailRequest], label: str, log_level: int | None = None) -> list[Email]:
    """Validate every request, then store them all; nothing is stored when one is invalid.

    An error names the request by ``label`` and its index: ``kwargs_list[3].recipients``.
    """
    lookup = lookup_for(requests)
    prepared = []
    for index, request in enumerate(requests):
        try:
            prepared.append(_prepare(request, lookup))
        except InvalidEmail as error:
            raise type(error)(f"{label}[{index}].{error.field}", error.value, error.reason) from None
    persist(prepared, log_level)
    return [item.email for item in prepared]


def _prepare(request: EmailRequest, lookup: TemplateLookup) -> Prepared:
    """Validate and render one request, then check its size as it will be stored."""
    prepared = prepare(request, lookup)
    check_message_size(prepared.email, prepared.attachments)
    return prepared


def persist(prepared: list[Prepared], log_level: int | None = None, *, announce: bool = True) -> None:
    """Insert emails and attachments atomically; signal and deliver 'now' mail on commit (unless not ``announce``)."""
    if not prepared:
        return
    emails = [item.email for item in prepared]
    with_attachments = [(item.email, item.attachments) for item in prepared if item.attachments]
    # mail.send's case: one statement checks the do-not-send list, inserts and notifies (insert.py).
    stored = store_single(emails[0]) if len(emails) == 1 and not with_attachments else None
    # Else recipients on the do-not-send list are taken off (one query for all the emails).
    screened = screen(emails) if stored is None else stored
    if stored is not None:
        pass
    elif len(emails) == 1 and not with_attachments and not screened:
        # One INSERT is atomic by itself: no savepoint round trips for the common case.
        emails[0].save()
        notify_queued()
    else:
        with transaction.atomic():
            insert_rows(emails)
            store_attachments(with_attachments)
            if screened:
                Log.objects.bulk_create(screened_logs(screened))
            notify_queued()
    queued = [email for email in emails if email.status in CLAIMABLE] if screened else emails
    if announce and queued:
        transaction.on_commit(lambda: _after_commit(queued, log_level))
        commit.announce(queued)  # queue_committed: once per transaction, for task-queue triggers


def _after_commit(emails: list[Email], log_level: int | None) -> None:
    """``email_queued`` for the emails queued (not those the do-not-send list left without recipients)."""
    email_queued.send(sender=Email, emails=emails)
    urgent = [email for email in emails if email.priority == PRIORITY.now]
    if urgent:
        Worker(log_level=log_level).deliver_ids([email.pk for email in urgent])
        refreshed = Email.objects.in_bulk([email.pk for email in urgent])
        for email in urgent:
            fresh = refreshed.get(email.pk)
            if fresh is not None:
                email.status = fresh.status
                email.number_of_retries = fresh.number_of_retries
                email.scheduled_time = fresh.scheduled_time


#: States in which an email may still be edited: no worker holds it and it was never sent.
EDITABLE = (*CLAIMABLE, STATUS.cancelled)

#: What an edit replaces: everything ``prepare`` decides, nothing of the email's history.
EDITED_FIELDS = (
    "from_email",
    "to",
    "cc",
    "bcc",
    "subject",
    "message",
    "html_message",
    "alternatives",
    "headers",
    "priority",
    "scheduled_time",
    "expires_at",
    "backend_alias",
    "language",
    "template",
    "template_language",
    "template_file",
    "context",
    "message_id",
)


def prepare_one(request: EmailRequest) -> Prepared:
    """Validate and render one request exactly as ``mail.send`` does, without storing anything."""
    return _prepare(request, lookup_for([request]))


def store_edit(email: Email, prepared: Prepared) -> bool:
    """Replace a queued (or cancelled) email's content with a prepared one; False if it is no longer editable.

    One conditional UPDATE: an email a worker claimed meanwhile (or that was
    sent) is left alone. Its id, status, attempts and history stay, except that
    an email the do-not-send list leaves without recipients becomes ``failed``.
    """
    screened = screen([prepared.email])
    values = {name: getattr(prepared.email, name) for name in EDITED_FIELDS}
    if screened and screened[0].nobody_left:
        values["status"] = STATUS.failed  # every recipient is on the do-not-send list
    with transaction.atomic():
        updated = Email.objects.filter(pk=email.pk, status__in=EDITABLE).update(**values, last_updated=timezone.now())
        if updated:
            for name, value in values.items():
                setattr(email, name, value)
            store_attachments([(email, prepared.attachments)])
            if screened:
                screened[0].email = email
                Log.objects.bulk_create(screened_logs(screened))
    if updated:
        notify_queued()  # its new schedule may be due now: wake PostgreSQL workers
    return bool(updated)


def create_one(request: EmailRequest, *, commit: bool = True) -> Email:
    """Validate and store one email without announcing it (``mail.create``): no signal, no 'now' delivery."""
    prepared = _prepare(request, lookup_for([request]))
    if commit:
        persist([prepared], announce=False)
    return prepared.email


def queue_one(request: EmailRequest, *, log_level: int | None = None, commit: bool = True) -> Email:
    """Validate and store one email (``mail.send``); with ``commit=False`` return it unsaved."""
    prepared = _prepare(request, lookup_for([request]))
    if not commit:
        if prepared.attachments:
            raise InvalidArgument(
                "commit", False, "cannot be used with attachments or inline images (they need a saved email)"
            )
        return prepared.email
    persist([prepared], log_level)
    return prepared.email
