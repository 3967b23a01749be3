"""A django-mailer message made into an email, validated exactly as the queueing backend validates one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..choices import PRIORITY
from ..enqueue.backend import check_message
from ..enqueue.prepare import Prepared
from ..enqueue.request import EmailRequest
from ..enqueue.store import prepare_one
from ..exceptions import InvalidEmail
from ..message.fields import fields_from_message
from ..models import Email
from .mailer_pickle import Unreadable, load_message
from .mailer_tables import DEFERRED, HIGH, LOW, MEDIUM, Row

#: django-mailer's priorities as ours (deferred mail is requeued at medium).
PRIORITIES = {HIGH: PRIORITY.high, MEDIUM: PRIORITY.medium, LOW: PRIORITY.low, DEFERRED: PRIORITY.medium}


def message_key(when_added: Any, message: Any) -> str:
    """What identifies a django-mailer message in its queue and in its logs: when it was added and its content.

    Not its Message-ID, which django-mailer adds only when it sends.
    """
    fields = fields_from_message(message)
    parts = [
        when_added.isoformat() if when_added is not None else "",
        fields.from_email,
        fields.to,
        fields.cc,
        fields.bcc,
        fields.subject,
        fields.message,
        fields.html_message,
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Converted:
    """A django-mailer message made into an unsaved email, with its attachments and its key."""

    prepared: Prepared
    key: str

    @property
    def email(self) -> Email:
        return self.prepared.email


def convert(row: Row, priority: int | None = None) -> Converted:
    """A row's message as an email validated like the queueing backend's; raise Unreadable saying why not."""
    message = load_message(row["message_data"])
    label = f"{row.table}[{row.id}]"
    try:
        check_message(message, label)
        fields = fields_from_message(message)
        request = EmailRequest(
            recipients=fields.to,
            cc=fields.cc,
            bcc=fields.bcc,
            sender=fields.from_email or None,
            subject=fields.subject,
            message=fields.message,
            html_message=fields.html_message,
            headers=fields.headers or None,
            attachment_data=fields.attachments,
            alternatives=fields.alternatives,
            priority=PRIORITIES.get(row["priority"], PRIORITY.medium) if priority is None else priority,
        )
        prepared = prepare_one(request)
        key = message_key(row["when_added"], message)
    except InvalidEmail as error:
        raise Unreadable(f"cannot be queued: {error}") from None
    except (TypeError, ValueError, AttributeError, LookupError, UnicodeError) as error:
        raise Unreadable(f"its message cannot be read ({type(error).__name__}: {error})") from None
    return Converted(prepared, key)
