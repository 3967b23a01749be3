"""Queueing emails: ``send``, ``send_many`` and Django-style helpers.

Every entry point validates its input the same way and stores nothing when any
part is invalid. Emails are written inside the caller's transaction; the
``email_queued`` signal and ``priority='now'`` delivery happen once it commits.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import make_msgid
from django.db import transaction

from .attachments import read_attachments, store_attachments
from .conf import settings as po_settings
from .connections import check_alias
from .exceptions import (
    InvalidAddress,
    InvalidArgument,
    InvalidEmail,
    MissingSender,
    TemplateConflict,
)
from .mime import AttachmentData
from .models import PRIORITY, STATUS, Email, EmailTemplate
from .notify import notify_queued
from .rendering import TemplateLookup, normalize_language, render_parts, render_template
from .signals import email_queued
from .templated import find_file_template, is_file_template, render_file_template
from .validation import (
    check_json_context,
    check_no_line_breaks,
    check_schedule,
    parse_address,
    parse_addresses,
    parse_datetime,
    parse_headers,
    parse_priority,
)

__all__ = [
    "send",
    "send_many",
    "send_mail",
    "send_html_mail",
    "send_mass_mail",
    "mail_admins",
    "mail_managers",
    "get_queued",
    "send_queued",
]

_SEND_ARGUMENTS = frozenset(
    {
        "recipients",
        "sender",
        "template",
        "context",
        "subject",
        "message",
        "html_message",
        "scheduled_time",
        "expires_at",
        "headers",
        "priority",
        "attachments",
        "render_on_delivery",
        "log_level",
        "commit",
        "cc",
        "bcc",
        "language",
        "backend",
    }
)


@dataclass
class _Prepared:
    email: Email
    attachments: list[AttachmentData] = field(default_factory=list)


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
    kwargs = dict(locals())
    commit = kwargs.pop("commit")
    log_level = kwargs.pop("log_level")
    lookup = TemplateLookup([template] if isinstance(template, str) and not is_file_template(template) else [])
    prepared = _prepare(kwargs, lookup)
    if not commit:
        if prepared.attachments:
            raise InvalidArgument(
                "commit", False, "cannot be used with attachments or inline images (they need a saved email)"
            )
        return prepared.email
    _persist([prepared], log_level=log_level)
    return prepared.email


def send_many(kwargs_list: Iterable[Mapping[str, Any]]) -> list[Email]:
    """Queue many emails with one bulk insert; each item takes ``send``'s arguments.

    Every item is validated exactly as ``send`` validates, before anything is
    stored: one bad item stores nothing and the error says which item.
    """
    items = list(kwargs_list)
    for index, kwargs in enumerate(items):
        if not isinstance(kwargs, Mapping):
            raise InvalidArgument(f"kwargs_list[{index}]", kwargs, "must be a dict of send() arguments")
        unknown = set(kwargs) - _SEND_ARGUMENTS
        if unknown:
            raise InvalidArgument(f"kwargs_list[{index}]", sorted(unknown), "are not arguments of send()")
    return queue_many(items)


def queue_many(items: Sequence[Mapping[str, Any]], label: str = "kwargs_list") -> list[Email]:
    """Validate and bulk-insert emails (send_many and the backend share this)."""
    names = {kw.get("template") for kw in items if isinstance(kw, Mapping) and isinstance(kw.get("template"), str)}
    lookup = TemplateLookup(n for n in names if n and not is_file_template(n))
    prepared = []
    for index, kwargs in enumerate(items):
        try:
            prepared.append(_prepare({k: v for k, v in kwargs.items() if k not in ("commit", "log_level")}, lookup))
        except InvalidEmail as error:
            raise type(error)(f"{label}[{index}].{error.field}", error.value, error.reason) from None
    _persist(prepared)
    return [item.email for item in prepared]


def _prepare(kwargs: dict[str, Any], lookup: TemplateLookup) -> _Prepared:
    """Validate and render one email's arguments into an unsaved Email."""
    template = kwargs.get("template")
    context = kwargs.get("context")
    subject = kwargs.get("subject") or ""
    message = kwargs.get("message") or ""
    html_message = kwargs.get("html_message") or ""
    render_on_delivery = bool(kwargs.get("render_on_delivery"))
    language = kwargs.get("language") or ""

    to = parse_addresses(kwargs.get("recipients"), "recipients")
    cc = parse_addresses(kwargs.get("cc"), "cc")
    bcc = parse_addresses(kwargs.get("bcc"), "bcc")
    if not (to or cc or bcc):
        raise InvalidAddress("recipients", kwargs.get("recipients"), "must contain at least one address")
    sender = kwargs.get("sender") or settings.DEFAULT_FROM_EMAIL
    if not sender:
        raise MissingSender("sender", kwargs.get("sender"), "is missing and settings.DEFAULT_FROM_EMAIL is empty")
    sender = parse_address(sender, "sender")
    headers = parse_headers(kwargs.get("headers"))
    priority_value = kwargs.get("priority")
    priority = parse_priority(
        po_settings.DEFAULT_PRIORITY if priority_value is None else priority_value,
        "priority" if priority_value is not None else "POST_OFFICE['DEFAULT_PRIORITY']",
    )
    scheduled_time = parse_datetime(kwargs.get("scheduled_time"), "scheduled_time")
    expires_at = parse_datetime(kwargs.get("expires_at"), "expires_at")
    check_schedule(scheduled_time, expires_at)
    backend_alias = check_alias(kwargs.get("backend"))
    language = _check_language(language)
    attachments = read_attachments(kwargs.get("attachments")) + list(kwargs.get("_attachment_data") or [])
    if context is not None and not isinstance(context, Mapping):
        raise InvalidArgument("context", context, "must be a dict")

    email = Email(
        from_email=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        headers=headers,
        priority=priority,
        status=STATUS.queued,
        scheduled_time=scheduled_time,
        expires_at=expires_at,
        backend_alias=backend_alias,
        language=language,
        alternatives=list(kwargs.get("_alternatives") or []),
    )
    if template:
        given = [
            name
            for name, value in (("subject", subject), ("message", message), ("html_message", html_message))
            if value
        ]
        if given:
            raise TemplateConflict(
                given[0], kwargs.get(given[0]), "cannot be combined with template; the template provides it"
            )
        if is_file_template(template):
            _render_file_template(email, attachments, template, context, language, render_on_delivery)
        else:
            chosen = lookup.resolve(template, language)
            email.template = chosen
            # The fallback taken, if any: 'pt-br' asked for, 'pt' or the base ('') used.
            email.template_language = chosen.language
            # Rendered in the language asked for, whichever translation was found.
            email.language = language or chosen.language
            if render_on_delivery:
                email.context = check_json_context(context or {})
            else:
                rendered = render_template(chosen, context or {}, lookup.compiled, language=email.language)
                email.subject, email.message, email.html_message = (
                    rendered.subject,
                    rendered.message,
                    rendered.html_message,
                )
                # {% inline_image %}: stored with the email, sent as related parts of the HTML.
                attachments.extend(
                    AttachmentData(
                        name=image.filename, content=image.content, mimetype=image.mimetype, headers=image.headers
                    )
                    for image in rendered.inline_images
                )
    else:
        if render_on_delivery:
            raise InvalidArgument("render_on_delivery", True, "needs a template to render from")
        subject = check_no_line_breaks("subject", subject)
        if context is not None:
            rendered = render_parts(
                subject, message, html_message, context, language=language, compiled=lookup.compiled
            )
            subject, message, html_message = rendered.subject, rendered.message, rendered.html_message
        email.subject, email.message, email.html_message = subject, message, html_message
    check_no_line_breaks("subject", email.subject)
    email.message_id = _message_id(headers)
    return _Prepared(email, attachments)


def _render_file_template(
    email: Email,
    attachments: list[AttachmentData],
    template: str,
    context: Mapping[str, Any] | None,
    language: str,
    render_on_delivery: bool,
) -> None:
    """Render a ``file:`` template (django-templated-mail's block format) into the email.

    With ``render_on_delivery`` the file is only looked up now (it must exist
    and compile); the context is stored and the file rendered at delivery.
    """
    if render_on_delivery:
        _path, email.template_language = find_file_template(template, language)
        email.template_file = template
        email.language = language
        email.context = check_json_context(context or {})
        return
    rendered = render_file_template(template, context or {}, language)
    email.template_language = rendered.language
    email.subject, email.message, email.html_message = rendered.subject, rendered.message, rendered.html_message
    attachments.extend(
        AttachmentData(name=image.filename, content=image.content, mimetype=image.mimetype, headers=image.headers)
        for image in rendered.inline_images
    )


def _check_language(language: Any) -> str:
    """Return the language code in its one spelling, if settings.LANGUAGES has it ('pt-BR' and 'pt_BR' match 'pt-br')."""
    if not language:
        return ""
    if isinstance(language, str):
        wanted = normalize_language(language)
        if wanted in _language_codes():
            return wanted
    raise InvalidArgument("language", language, "is not a language code in settings.LANGUAGES")


_LANGUAGE_CODES: tuple[Any, frozenset[str]] = (None, frozenset())


def _language_codes() -> frozenset[str]:
    """settings.LANGUAGES' codes, normalised once per value of the setting (send_many checks each email)."""
    global _LANGUAGE_CODES
    languages = settings.LANGUAGES
    if _LANGUAGE_CODES[0] is not languages:
        _LANGUAGE_CODES = (languages, frozenset(normalize_language(code) for code, _name in languages))
    return _LANGUAGE_CODES[1]


def _message_id(headers: Mapping[str, str] | None) -> str | None:
    for name, value in (headers or {}).items():
        if name.lower() == "message-id":
            return value
    if po_settings.MESSAGE_ID_ENABLED:
        return make_msgid(domain=po_settings.MESSAGE_ID_FQDN)
    return None


def _persist(prepared: list[_Prepared], log_level: int | None = None) -> None:
    """Insert emails and attachments atomically; signal and deliver 'now' mail on commit."""
    if not prepared:
        return
    emails = [item.email for item in prepared]
    with_attachments = [(item.email, item.attachments) for item in prepared if item.attachments]
    if len(emails) == 1 and not with_attachments:
        # One INSERT is atomic by itself: no savepoint round trips for the common case.
        emails[0].save()
        notify_queued()
    else:
        with transaction.atomic():
            Email.objects.bulk_create(emails)
            store_attachments(with_attachments)
            notify_queued()
    transaction.on_commit(lambda: _after_commit(emails, log_level))


def _after_commit(emails: list[Email], log_level: int | None) -> None:
    email_queued.send(sender=Email, emails=emails)
    urgent = [email for email in emails if email.priority == PRIORITY.now]
    if urgent:
        from .delivery import Worker

        Worker(log_level=log_level).deliver_ids([email.pk for email in urgent])
        refreshed = Email.objects.in_bulk([email.pk for email in urgent])
        for email in urgent:
            fresh = refreshed.get(email.pk)
            if fresh is not None:
                email.status = fresh.status
                email.number_of_retries = fresh.number_of_retries
                email.scheduled_time = fresh.scheduled_time


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
    kwargs_list = []
    for index, item in enumerate(datatuple):
        if not isinstance(item, Sequence) or len(item) != 4:
            raise InvalidArgument(f"datatuple[{index}]", item, "must be (subject, message, from_email, recipient_list)")
        subject, message, from_email, recipients = item
        kwargs_list.append(
            {
                "recipients": recipients,
                "sender": from_email,
                "subject": subject,
                "message": message,
                "priority": priority,
            }
        )
    # Errors name the caller's own argument: "datatuple[1].recipients".
    return len(queue_many(kwargs_list, label="datatuple"))


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
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
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


# -- django-post_office's delivery entry points --------------------------------


def get_queued() -> Any:
    """Return the emails that are due now, in sending order (not claimed)."""
    return Email.objects.due().in_sending_order()


def send_queued(processes: int = 1, log_level: int | None = None) -> tuple[int, int, int]:
    """Deliver every due email once; return ``(sent, failed, requeued)``."""
    from .workers import run_processes

    stats = run_processes(processes=processes, log_level=log_level)
    return stats.sent, stats.failed, stats.requeued
