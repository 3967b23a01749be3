"""django-post_office's ``post_office.utils`` helpers, kept for code that imports them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from django.db import transaction

from .conf import settings as po_settings
from .enqueue.attachments import attachment_rows, read_attachments
from .enqueue.request import EmailRequest
from .enqueue.store import queue
from .maintenance import cleanup_expired_mails
from .models import Attachment, Email, EmailTemplate
from .rendering.lookup import find_templates, select_template
from .validation import parse_addresses
from .validation import parse_priority as _parse_priority

__all__ = [
    "cleanup_expired_mails",
    "create_attachments",
    "get_email_template",
    "parse_emails",
    "parse_priority",
    "send_mail",
    "split_emails",
]

_Item = TypeVar("_Item")


def send_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    html_message: str = "",
    scheduled_time: datetime.datetime | None = None,
    headers: Mapping[str, str] | None = None,
    priority: str | int | None = None,
) -> list[Email]:
    """Queue one email per recipient (django-post_office's behaviour); return them.

    All are validated before any is stored.
    """
    requests = [
        EmailRequest(
            recipients=[recipient],
            sender=from_email,
            subject=subject,
            message=message,
            html_message=html_message,
            scheduled_time=scheduled_time,
            headers=headers,
            priority=priority,
        )
        for recipient in parse_addresses(recipient_list, "recipient_list")
    ]
    return queue(requests, label="kwargs_list")


def get_email_template(name: str, language: str = "") -> EmailTemplate:
    """Return the template (or its translation) with this name, as django-post_office does."""
    return select_template(find_templates([name]), name, language)


def split_emails(emails: Sequence[_Item], split_count: int = 1) -> list[Sequence[_Item]]:
    """Deal ``emails`` into ``split_count`` lists, round robin (none for no emails)."""
    if not list(emails):
        return []
    return [emails[index::split_count] for index in range(split_count)]


def create_attachments(attachment_files: Any) -> list[Attachment]:
    """Store attachments given as ``mail.send`` takes them; return one new Attachment row for each.

    ``{name: file | content | path | {'file': ..., 'mimetype': ..., 'headers': ...}}``;
    the rows are linked to no email yet (``email.attachments.add(*rows)``).
    Paths are read only inside ``POST_OFFICE['ATTACHMENT_DIRS']``.
    """
    items = read_attachments(attachment_files)
    with transaction.atomic():
        return attachment_rows(items, share_rows=False)


def parse_priority(priority: Any) -> int:
    """The priority's number; None is ``DEFAULT_PRIORITY``. Raises InvalidPriority (a ValueError)."""
    return _parse_priority(po_settings.DEFAULT_PRIORITY if priority is None else priority)


def parse_emails(emails: Any) -> list[str]:
    """A list of valid addresses: one string is one address, None none. Raises InvalidAddress (a ValidationError)."""
    return parse_addresses(emails, "recipients")
