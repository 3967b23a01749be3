"""Queueing emails: ``send``, ``send_many`` and Django-style helpers.

Every entry point validates its input the same way and stores nothing when any
part is invalid. Emails are written inside the caller's transaction; the
``email_queued`` signal and ``priority='now'`` delivery happen once it commits.
The work is done in :mod:`post_office.enqueue`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings

from .choices import PRIORITY, STATUS
from .conf import settings as po_settings
from .delivery.processes import run_processes
from .enqueue.request import EmailRequest
from .enqueue.store import create_one, queue, queue_one
from .exceptions import InvalidArgument
from .models import Email, EmailQuerySet, EmailTemplate, Log
from .signals import email_queued
from .validation import check_log_level, check_no_line_breaks

__all__ = [
    "PRIORITY",
    "STATUS",
    "Email",
    "EmailTemplate",
    "Log",
    "attach_templates",
    "create",
    "email_queued",
    "logger",
    "send",
    "send_many",
    "send_mail",
    "send_html_mail",
    "send_mass_mail",
    "mail_admins",
    "mail_managers",
    "get_queued",
    "send_queued",
    "send_queued_mail_until_done",
]

logger = logging.getLogger("post_office")


def send(
    recipients: str | Sequence[str] | None = None,
    sender: str | None = None,
    template: str | EmailTemplate | None = None,
    context: Mapping[str, Any] | None = None,
    subject: str = "",
    message: str = "",
    html_message: str = "",
    scheduled_time: datetime.datetime | datetime.date | None = None,
    expires_at: datetime.datetime | datetime.date | None = None,
    headers: Mapping[str, str] | None = None,
    priority: str | int | None = None,
    attachments: Any = None,
    render_on_delivery: bool = False,
    log_level: int | None = None,
    commit: bool = True,
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    language: str = "",
    backend: str = "",
) -> Email:
    """Queue one email and return it.

    With ``template`` (a name or an EmailTemplate) the email is rendered from it
    with ``context`` in ``language``; otherwise ``subject``, ``message`` and
    ``html_message`` are used as given, rendered as templates only when a
    ``context`` is passed. ``priority='now'`` delivers it as soon as the
    surrounding transaction commits; if that attempt fails it stays queued.
    Raises an :class:`~post_office.exceptions.InvalidEmail` subclass naming the
    bad field; nothing is stored then.
    """
    request = EmailRequest(
        recipients=recipients,
        sender=sender,
        template=template,
        context=context,
        subject=subject,
        message=message,
        html_message=html_message,
        scheduled_time=scheduled_time,
        expires_at=expires_at,
        headers=headers,
        priority=priority,
        attachments=attachments,
        render_on_delivery=render_on_delivery,
        cc=cc,
        bcc=bcc,
        language=language,
        backend=backend,
    )
    return queue_one(request, log_level=check_log_level(log_level), commit=commit)


def send_many(kwargs_list: Iterable[Mapping[str, Any]]) -> list[Email]:
    """Queue many emails with one bulk insert; each item takes ``send``'s arguments.

    Every item is validated exactly as ``send`` validates, before anything is
    stored: one bad item stores nothing and the error says which item.
    """
    requests = [
        EmailRequest.from_kwargs(kwargs, f"kwargs_list[{index}]")
        for index, kwargs in enumerate(_items(kwargs_list, "kwargs_list", "a list of dicts of send() arguments"))
    ]
    return queue(requests, label="kwargs_list")


def _items(value: Any, field: str, expected: str) -> list[Any]:
    """The items of a list argument; refuse a string, a dict or anything that is not a collection."""
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes, Mapping)):
        raise InvalidArgument(field, value, f"must be {expected}")
    return list(value)


# -- Django-style helpers ----------------------------------------------------


def send_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    html_message: str | None = None,
    priority: str | int | None = None,
) -> int:
    """Queue a message like ``django.core.mail.send_mail``; return the number queued (1)."""
    send(
        recipients=recipient_list,
        sender=from_email,
        subject=subject,
        message=message,
        html_message=html_message or "",
        priority=priority,
    )
    return 1


def send_html_mail(
    subject: str,
    message: str,
    message_html: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    priority: str | int | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> int:
    """Queue a message with an HTML alternative (django-mailer's helper)."""
    send(
        recipients=recipient_list,
        sender=from_email,
        subject=subject,
        message=message,
        html_message=message_html,
        priority=priority,
        headers=headers,
    )
    return 1


def send_mass_mail(
    datatuple: Iterable[Sequence[Any]],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    priority: str | int | None = None,
) -> int:
    """Queue ``(subject, message, from_email, recipient_list)`` tuples; return how many."""
    requests = []
    for index, item in enumerate(
        _items(datatuple, "datatuple", "a list of (subject, message, from_email, recipient_list)")
    ):
        if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 4:
            raise InvalidArgument(f"datatuple[{index}]", item, "must be (subject, message, from_email, recipient_list)")
        subject, message, from_email, recipients = item
        requests.append(
            EmailRequest(recipients=recipients, sender=from_email, subject=subject, message=message, priority=priority)
        )
    # Errors name the caller's own argument: "datatuple[1].recipients".
    return len(queue(requests, label="datatuple"))


def _server_recipients(setting_name: str) -> list[str]:
    recipients = getattr(settings, setting_name, None) or []
    result = []
    for entry in recipients:
        # Django 5.2 uses (name, address) pairs; 6.1 plain addresses.
        result.append(entry[1] if isinstance(entry, (list, tuple)) else entry)
    return result


def _mail_server(
    setting_name: str, subject: str, message: str, html_message: str | None, priority: str | int | None
) -> int:
    recipients = _server_recipients(setting_name)
    if not recipients:
        return 0
    send(
        recipients=recipients,
        sender=settings.SERVER_EMAIL,
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{check_no_line_breaks('subject', subject)}",
        message=message,
        html_message=html_message or "",
        priority=priority,
    )
    return 1


def mail_admins(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    html_message: str | None = None,
    priority: str | int | None = None,
) -> int:
    """Queue a message to settings.ADMINS, with EMAIL_SUBJECT_PREFIX and SERVER_EMAIL."""
    return _mail_server("ADMINS", subject, message, html_message, priority)


def mail_managers(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    html_message: str | None = None,
    priority: str | int | None = None,
) -> int:
    """Queue a message to settings.MANAGERS, with EMAIL_SUBJECT_PREFIX and SERVER_EMAIL."""
    return _mail_server("MANAGERS", subject, message, html_message, priority)


# -- django-post_office's building blocks and delivery entry points -----------


def create(
    sender: str | None,
    recipients: str | Sequence[str] | None = None,
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    subject: str = "",
    message: str = "",
    html_message: str = "",
    context: Mapping[str, Any] | None = None,
    scheduled_time: datetime.datetime | datetime.date | None = None,
    expires_at: datetime.datetime | datetime.date | None = None,
    headers: Mapping[str, str] | None = None,
    template: str | EmailTemplate | None = None,
    priority: str | int | None = None,
    render_on_delivery: bool = False,
    commit: bool = True,
    backend: str = "",
) -> Email:
    """Build one email as ``send`` does and store it (unless ``commit=False``); return it.

    The building block under ``send``: no attachments, no ``email_queued``
    signal and no immediate delivery (a ``priority='now'`` email waits for the
    next delivery run, or your ``email.dispatch()``). Validated like ``send``.
    """
    request = EmailRequest(
        recipients=recipients,
        sender=sender,
        template=template,
        context=context,
        subject=subject,
        message=message,
        html_message=html_message,
        scheduled_time=scheduled_time,
        expires_at=expires_at,
        headers=headers,
        priority=priority,
        render_on_delivery=render_on_delivery,
        cc=cc,
        bcc=bcc,
        backend=backend,
    )
    return create_one(request, commit=commit)


def get_queued() -> EmailQuerySet:
    """The emails due now, in sending order, at most ``BATCH_SIZE`` of them (a sliced queryset, not claimed)."""
    return Email.objects.due().in_sending_order().prefetch_related("attachments")[: po_settings.BATCH_SIZE]


def attach_templates(emails: Sequence[Email]) -> None:
    """Load the templates of these emails in one query and set each email's ``template``."""
    ids = {email.template_id for email in emails if email.template_id is not None}
    if not ids:
        return
    templates = EmailTemplate.objects.in_bulk(ids)
    for email in emails:
        if email.template_id in templates:
            email.template = templates[email.template_id]


def send_queued(processes: int = 1, log_level: int | None = None) -> tuple[int, int, int]:
    """Deliver every due email once; return ``(sent, failed, requeued)``."""
    stats = run_processes(processes=processes, log_level=log_level)
    return stats.sent, stats.failed, stats.requeued


def send_queued_mail_until_done(lockfile: str | None = None, processes: int = 1, log_level: int | None = None) -> None:
    """Deliver until nothing is due (what the ``send_queued_mail`` command and the Celery task do).

    One delivery run claims batch after batch until the queue is empty. No lock
    is taken (``lockfile`` is accepted and ignored): claims keep overlapping
    runs from sending an email twice.
    """
    send_queued(processes, log_level)
