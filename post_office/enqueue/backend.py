"""The queueing email backend, and the queue options of one Django message it reads.

Django's mail APIs put messages on the queue through :class:`EmailBackend`
(``EMAIL_BACKEND = 'post_office.EmailBackend'`` or a Django 6.1 ``MAILERS``
entry, whose OPTIONS may set ``priority`` and ``backend``). A message's own
options (priority, schedule, expiry, delivery alias, language) are set by
:func:`queue_options` and ``TemplatedEmailMessage``, validated at once, and
kept in its ``post_office_options`` dict, which only this backend reads.
"""

from __future__ import annotations

import datetime
import email.message
from collections.abc import Mapping, Sequence
from email.mime.base import MIMEBase
from typing import Any, TypeVar

from django.core import mail as django_mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.functional import Promise

from ..compat import DJANGO_61
from ..exceptions import InvalidAddress, InvalidArgument, InvalidAttachment, InvalidEmail, InvalidHeader
from ..languages import check_language
from ..message.fields import fields_from_message
from ..transport.connections import check_alias
from ..validation import check_schedule, parse_datetime, parse_priority
from .request import EmailRequest
from .store import queue

#: The attribute of a Django message where the options are kept.
QUEUE_OPTIONS_ATTRIBUTE = "post_office_options"
#: The options a message may carry: ``mail.send``'s arguments of the same names.
QUEUE_OPTIONS = ("priority", "scheduled_time", "expires_at", "backend", "language")
#: The options that only matter to the queue (``language`` also picks what is rendered).
QUEUE_ONLY_OPTIONS = ("priority", "scheduled_time", "expires_at", "backend")

_Message = TypeVar("_Message")


class EmailBackend(BaseEmailBackend):
    """Queues messages instead of sending them; ``send_messages`` returns the count queued."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        alias: str | None = None,
        priority: str | int | None = None,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        if DJANGO_61:
            # fail_silently is handled here, so Django 6.1 sees no deprecated argument.
            super().__init__(alias=alias, **kwargs)  # type: ignore[call-arg]
        else:
            super().__init__(fail_silently=fail_silently, **kwargs)
            self.alias = alias
        self.fail_silently = fail_silently
        self.priority = priority
        self.backend = backend
        self._check_options()

    def _check_options(self) -> None:
        """Refuse a bad ``priority`` or ``backend`` now, not on every send.

        As a MAILERS entry the error is Django 6.1's InvalidMailer, naming the entry.
        """
        try:
            if self.priority is not None:
                parse_priority(self.priority)
            check_alias(self.backend)
        except InvalidEmail as error:
            if DJANGO_61 and self.alias is not None:
                raise django_mail.InvalidMailer(  # type: ignore[attr-defined]
                    f"OPTIONS[{error.field!r}]: {error.value!r} {error.reason}", alias=self.alias
                ) from error
            raise

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue the messages (all or none, in the caller's transaction); return how many."""
        if not email_messages:
            return 0
        requests = []
        for index, message in enumerate(email_messages):
            check_message(message, f"messages[{index}]")
            # As message.recipients(), which fails when one of the lists was set to a tuple.
            if any([*message.to, *message.cc, *message.bcc]):
                requests.append(self._request(message, index))
        return len(queue(requests, label="messages"))

    def _request(self, message: EmailMessage, index: int) -> EmailRequest:
        fields = fields_from_message(message)
        options = options_of(message, f"messages[{index}].{QUEUE_OPTIONS_ATTRIBUTE}")
        return EmailRequest(
            recipients=fields.to,
            cc=fields.cc,
            bcc=fields.bcc,
            sender=fields.from_email,
            subject=fields.subject,
            message=fields.message,
            html_message=fields.html_message,
            headers=fields.headers or None,
            attachment_data=fields.attachments,
            alternatives=fields.alternatives,
            priority=options.get("priority", self.priority),
            backend=options.get("backend") or self.backend or "",
            scheduled_time=options.get("scheduled_time"),
            expires_at=options.get("expires_at"),
            language=options.get("language") or "",
        )


_TEXT = (str, Promise)


def check_message(message: Any, label: str) -> None:
    """Refuse a message whose parts are not of the types Django's mail API documents.

    Django checks little when a message is built; this checks what the queue
    reads from it (text, lists of addresses, headers, alternatives, attachments),
    so that every value is read without raising, and errors name the message.
    """
    if not isinstance(message, EmailMessage):
        raise InvalidArgument(label, message, "must be a Django EmailMessage")
    for name in ("to", "cc", "bcc", "reply_to"):
        value = getattr(message, name)
        if not isinstance(value, (list, tuple)):
            raise InvalidArgument(f"{label}.{name}", value, "must be a list or tuple of addresses")
        for item in value:
            if not isinstance(item, _TEXT):
                raise InvalidAddress(f"{label}.{name}", item, f"must be a string, not {type(item).__name__}")
    if message.from_email is not None and not isinstance(message.from_email, _TEXT):
        raise InvalidAddress(f"{label}.from_email", message.from_email, "must be a string")
    _check_text(f"{label}.subject", message.subject)
    _check_text(f"{label}.body", message.body, allow_bytes=True)
    headers = message.extra_headers
    if headers is not None and not isinstance(headers, Mapping):
        raise InvalidArgument(f"{label}.headers", headers, "must be a dict of header names to values")
    for name, value in (headers or {}).items():
        if not isinstance(name, _TEXT):
            raise InvalidHeader(f"{label}.headers name", name, "must be a string")
        if not isinstance(value, (*_TEXT, int, float)) or isinstance(value, bool):
            raise InvalidHeader(f"{label}.headers[{name!r}]", value, "must be a string or a number")
    for index, alternative in enumerate(getattr(message, "alternatives", None) or []):
        where = f"{label}.alternatives[{index}]"
        if not isinstance(alternative, Sequence) or isinstance(alternative, (str, bytes)) or len(alternative) != 2:
            raise InvalidArgument(where, alternative, "must be (content, mimetype)")
        _check_text(f"{where} content", alternative[0], allow_bytes=True)
        _check_text(f"{where} mimetype", alternative[1])
    for index, attachment in enumerate(message.attachments):
        _check_attachment(f"{label}.attachments[{index}]", attachment)


def _check_text(field: str, value: Any, allow_bytes: bool = False) -> None:
    if value is None:
        return  # read as empty, as Django does
    if allow_bytes and isinstance(value, bytes):
        try:
            value.decode()
        except UnicodeDecodeError as error:
            raise InvalidArgument(field, value, f"is bytes that are not UTF-8 ({error.reason})") from None
    elif not isinstance(value, _TEXT):
        raise InvalidArgument(field, value, f"must be a string, not {type(value).__name__}")


def _check_attachment(field: str, attachment: Any) -> None:
    if isinstance(attachment, (MIMEBase, email.message.MIMEPart)):
        return
    if not isinstance(attachment, Sequence) or isinstance(attachment, (str, bytes)) or len(attachment) != 3:
        raise InvalidAttachment(field, attachment, "must be (filename, content, mimetype) or a MIME part")
    filename, content, mimetype = attachment
    if filename is not None and not isinstance(filename, _TEXT):
        raise InvalidAttachment(field, filename, "has a filename that is not a string")
    if not isinstance(content, (bytes, *_TEXT)):
        raise InvalidAttachment(field, content, "has content that is not bytes or a string")
    if mimetype is not None and not isinstance(mimetype, _TEXT):
        raise InvalidAttachment(field, mimetype, "has a MIME type that is not a string")


def options_of(message: EmailMessage, field: str = QUEUE_OPTIONS_ATTRIBUTE) -> dict[str, Any]:
    """The options a message carries ({} without any); refuse a value that is not a dict of known options."""
    options = getattr(message, QUEUE_OPTIONS_ATTRIBUTE, None)
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidArgument(field, options, "must be a dict; set it with post_office.queue_options()")
    unknown = sorted(set(options) - set(QUEUE_OPTIONS))
    if unknown:
        raise InvalidArgument(field, unknown, f"are not queue options (use {', '.join(QUEUE_OPTIONS)})")
    return dict(options)


def queue_options(
    message: _Message,
    *,
    priority: str | int | None = None,
    scheduled_time: datetime.datetime | datetime.date | None = None,
    expires_at: datetime.datetime | datetime.date | None = None,
    backend: str | None = None,
    language: str | None = None,
) -> _Message:
    """Set how ``post_office.EmailBackend`` queues this Django message; return the message.

    Each option means what ``mail.send``'s argument of that name means and is
    validated now, with the same errors (an
    :class:`~post_office.exceptions.InvalidEmail` naming the field). Options
    left ``None`` keep their earlier value. They are kept in the message's
    ``post_office_options`` dict, which only ``post_office.EmailBackend``
    reads: any other backend sends the message at once and ignores them, so
    ``priority``, ``scheduled_time``, ``expires_at`` and ``backend`` are
    refused here for a message whose ``connection`` is another backend.
    """
    given = {
        "priority": priority,
        "scheduled_time": scheduled_time,
        "expires_at": expires_at,
        "backend": backend,
        "language": language,
    }
    return set_queue_options(message, given, check_connection=True)


def set_queue_options(message: _Message, given: Mapping[str, Any], *, check_connection: bool) -> _Message:
    """Validate ``given`` (None: unchanged) merged with the message's options, and store them.

    With ``check_connection``, refuse options that the message's own connection
    (another backend than this one) would ignore.
    """
    if not isinstance(message, EmailMessage):
        raise InvalidArgument("message", message, "must be a Django EmailMessage")
    current = getattr(message, QUEUE_OPTIONS_ATTRIBUTE, None)
    options = dict(current) if isinstance(current, Mapping) else {}
    options.update({name: value for name, value in given.items() if value is not None})
    if options.get("priority") is not None:
        parse_priority(options["priority"])
    check_schedule(
        parse_datetime(options.get("scheduled_time"), "scheduled_time"),
        parse_datetime(options.get("expires_at"), "expires_at"),
    )
    check_alias(options.get("backend"))
    if "language" in options:
        options["language"] = check_language(options["language"])
    connection = bound_connection(message)
    ignored = ignored_options(options)
    if check_connection and ignored and connection is not None and not isinstance(connection, EmailBackend):
        raise InvalidArgument(
            "connection",
            f"{type(connection).__module__}.{type(connection).__qualname__}",
            f"sends at once and would ignore {', '.join(ignored)}; use post_office.EmailBackend or no connection",
        )
    setattr(message, QUEUE_OPTIONS_ATTRIBUTE, options)
    return message


def ignored_options(options: Mapping[str, Any]) -> list[str]:
    """The options set that another backend than the queueing one would ignore."""
    return [name for name in QUEUE_ONLY_OPTIONS if options.get(name) not in (None, "")]


def bound_connection(message: EmailMessage) -> BaseEmailBackend | None:
    """The backend a message was given (its ``connection``), or None.

    Read from the instance itself: Django 6.1 keeps it in ``_connection`` behind
    a property that warns about its deprecation.
    """
    attributes = vars(message)
    return attributes.get("_connection", attributes.get("connection"))


def sending_backend(message: EmailMessage, using: str | None = None) -> BaseEmailBackend | None:
    """The backend ``message.send(using=using)`` sends (or sent) through, or None if unknown.

    Django 5.2 keeps the connection ``send()`` used on the message; Django 6.1
    does not, so it is worked out the way 6.1's ``send()`` chooses it.
    """
    bound = bound_connection(message)
    if not DJANGO_61:
        return bound
    if using is not None:
        return django_mail.mailers[using]  # type: ignore[attr-defined]
    return bound or django_mail.mailers["default"]  # type: ignore[attr-defined]
