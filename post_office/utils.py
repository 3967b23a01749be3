"""django-post_office's ``post_office.utils`` helpers, kept for code that imports them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from .enqueue.request import EmailRequest
from .enqueue.store import queue
from .models import Email, EmailTemplate
from .rendering.lookup import find_templates, select_template
from .validation import parse_addresses


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
