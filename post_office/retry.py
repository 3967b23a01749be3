"""What a failed delivery attempt leads to: retry later, or fail for good."""

from __future__ import annotations

import datetime
import smtplib
from dataclasses import dataclass

from django.template import TemplateDoesNotExist, TemplateSyntaxError

from .conf import settings as po_settings
from .exceptions import PostOfficeError

#: Errors that the same attempt would hit again, however often it is retried.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PostOfficeError,
    TemplateSyntaxError,
    TemplateDoesNotExist,
    UnicodeError,
)


def is_permanent(error: BaseException) -> bool:
    """Return True when retrying cannot help (bad input, 5xx SMTP reply)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600
    return isinstance(error, PERMANENT_ERRORS)


@dataclass(frozen=True)
class Decision:
    retry: bool
    next_attempt: datetime.datetime | None = None


def decide(error: BaseException, retries_so_far: int, now: datetime.datetime, min_retries: int = 0) -> Decision:
    """Requeue a transient failure while MAX_RETRIES (at least ``min_retries``) allows, else fail it."""
    if is_permanent(error) or retries_so_far >= max(po_settings.MAX_RETRIES, min_retries):
        return Decision(retry=False)
    return Decision(retry=True, next_attempt=now + po_settings.RETRY_INTERVAL)
