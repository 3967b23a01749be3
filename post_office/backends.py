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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django
from django.core.mail.backends.base import BaseEmailBackend

_ACCEPTS_ALIAS = django.VERSION >= (6, 1)


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
        for message in email_messages:
            if not message.recipients():
                continue
            fields = fields_from_message(message)
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
                    "priority": self.priority,
                    "backend": self.backend or "",
                }
            )
        return len(queue_many(kwargs_list, label="messages"))
