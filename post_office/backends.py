"""The queueing email backend: Django's mail APIs put messages on the queue.

Use it as ``EMAIL_BACKEND = 'post_office.EmailBackend'`` or, with Django 6.1,
as a ``MAILERS`` entry::

    MAILERS = {
        "default": {
            "BACKEND": "post_office.EmailBackend",
            "OPTIONS": {"priority": "high", "backend": "smtp"},
        },
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {...}},
    }

OPTIONS: ``priority`` (for every message queued through this entry) and
``backend`` (the delivery alias those messages are sent through later).

Options of one message (``priority``, ``scheduled_time``, ``expires_at``,
``backend``, ``language``) are set with :func:`queue_options`; they win over
the backend's OPTIONS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import django
from django.core.mail.backends.base import BaseEmailBackend

_ACCEPTS_ALIAS = django.VERSION >= (6, 1)

#: The attribute of a Django message where :func:`queue_options` keeps its options.
QUEUE_OPTIONS_ATTRIBUTE = "post_office_options"
#: The options :func:`queue_options` accepts: ``mail.send``'s arguments of the same names.
QUEUE_OPTIONS = ("priority", "scheduled_time", "expires_at", "backend", "language")

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
        if _ACCEPTS_ALIAS:
            # fail_silently is handled here, so Django 6.1 sees no deprecated argument.
            super().__init__(alias=alias, **kwargs)
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
        from .connections import check_alias
        from .exceptions import InvalidEmail
        from .validation import parse_priority

        try:
            if self.priority is not None:
                parse_priority(self.priority)
            check_alias(self.backend)
        except InvalidEmail as error:
            if _ACCEPTS_ALIAS and self.alias is not None:
                from django.core.mail import InvalidMailer  # type: ignore[attr-defined]

                raise InvalidMailer(
                    f"OPTIONS[{error.field!r}]: {error.value!r} {error.reason}", alias=self.alias
                ) from error
            raise

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Queue the messages (all or none, in the caller's transaction); return how many."""
        if not email_messages:
            return 0
        from .mail import queue_many
        from .mime import fields_from_message

        kwargs_list = []
        for index, message in enumerate(email_messages):
            if not message.recipients():
                continue
            fields = fields_from_message(message)
            options = _options_of(message, index)
            kwargs_list.append(
                {
                    "recipients": fields.to,
                    "cc": fields.cc,
                    "bcc": fields.bcc,
                    "sender": fields.from_email,
                    "subject": fields.subject,
                    "message": fields.message,
                    "html_message": fields.html_message,
                    "headers": fields.headers or None,
                    "_attachment_data": fields.attachments,
                    "_alternatives": fields.alternatives,
                    "priority": options.get("priority", self.priority),
                    "backend": options.get("backend") or self.backend or "",
                    "scheduled_time": options.get("scheduled_time"),
                    "expires_at": options.get("expires_at"),
                    "language": options.get("language") or "",
                }
            )
        return len(queue_many(kwargs_list, label="messages"))


def bound_connection(message: Any) -> Any:
    """The backend a message was given (its ``connection``), or None.

    Read from the instance itself: Django 6.1 keeps it in ``_connection`` behind
    a property that warns about its deprecation.
    """
    attributes = vars(message)
    return attributes.get("_connection", attributes.get("connection"))


def sending_backend(message: Any, using: str | None = None) -> Any:
    """The backend ``message.send(using=using)`` sends (or sent) through, or None if unknown.

    Django 5.2 keeps the connection ``send()`` used on the message; Django 6.1
    does not, so it is worked out the way 6.1's ``send()`` chooses it.
    """
    bound = bound_connection(message)
    if not _ACCEPTS_ALIAS:
        return bound
    from django.core import mail

    if using is not None:
        return mail.mailers[using]  # type: ignore[attr-defined]
    return bound or mail.mailers["default"]  # type: ignore[attr-defined]


def _options_of(message: Any, index: int) -> Mapping[str, Any]:
    """The message's queue options; queue_many validates their values like mail.send's."""
    from .exceptions import InvalidArgument

    options = getattr(message, QUEUE_OPTIONS_ATTRIBUTE, None)
    if options is None:
        return {}
    field = f"messages[{index}].{QUEUE_OPTIONS_ATTRIBUTE}"
    if not isinstance(options, Mapping):
        raise InvalidArgument(field, options, "must be a dict; set it with post_office.queue_options()")
    unknown = sorted(set(options) - set(QUEUE_OPTIONS))
    if unknown:
        raise InvalidArgument(field, unknown, f"are not queue options (use {', '.join(QUEUE_OPTIONS)})")
    return options


def queue_options(
    message: _Message,
    *,
    priority: str | int | None = None,
    scheduled_time: Any = None,
    expires_at: Any = None,
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


#: The options that only matter to the queue (``language`` also picks what is rendered).
QUEUE_ONLY_OPTIONS = ("priority", "scheduled_time", "expires_at", "backend")


def set_queue_options(message: _Message, given: Mapping[str, Any], *, check_connection: bool) -> _Message:
    """Validate ``given`` (None: unchanged) merged with the message's options, and store them."""
    from django.core.mail import EmailMessage

    from .connections import check_alias
    from .exceptions import InvalidArgument
    from .validation import check_schedule, parse_datetime, parse_priority

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
    if check_connection and ignored_options(options) and connection is not None:
        if not isinstance(connection, EmailBackend):
            raise InvalidArgument(
                "connection",
                f"{type(connection).__module__}.{type(connection).__qualname__}",
                f"sends at once and would ignore {', '.join(ignored_options(options))}; "
                "use post_office.EmailBackend or no connection",
            )
    setattr(message, QUEUE_OPTIONS_ATTRIBUTE, options)
    return message


def ignored_options(options: Mapping[str, Any]) -> list[str]:
    """The options set that another backend than this one would ignore."""
    return [name for name in QUEUE_ONLY_OPTIONS if options.get(name) not in (None, "")]


def check_language(language: Any, field: str = "language") -> str:
    """Return the code as settings.LANGUAGES spells it ('pt_BR' -> 'pt-br'; '' means none), or raise."""
    from django.conf import settings

    from .exceptions import InvalidArgument
    from .rendering import normalize_language

    if language in (None, ""):
        return ""
    if isinstance(language, str):
        wanted = normalize_language(language)
        if any(normalize_language(code) == wanted for code, _name in settings.LANGUAGES):
            return wanted
    raise InvalidArgument(field, language, "is not a language code in settings.LANGUAGES")
