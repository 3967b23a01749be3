"""django-post_office's ``post_office.utils`` helpers, kept for code that imports them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from .models import Email


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
    from .mail import send_many

    return send_many(
        [
            {
                "recipients": [recipient],
                "sender": from_email,
                "subject": subject,
                "message": message,
                "html_message": html_message,
                "scheduled_time": scheduled_time,
                "headers": headers,
                "priority": priority,
            }
            for recipient in recipient_list
        ]
    )


def get_email_template(name: str, language: str = "") -> Any:
    """Return the template (or its translation) with this name, as django-post_office does."""
    from .rendering import find_templates, select_template

    return select_template(find_templates([name]), name, language)
