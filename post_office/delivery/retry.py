"""What a failed delivery attempt leads to: retry later with backoff, or fail for good.

Errors are classified as *permanent* (retrying cannot help: 5xx SMTP replies,
invalid addresses or headers, template errors) or *transient* (4xx replies,
disconnects, timeouts, refused connections, and anything unexpected). Transient
failures are requeued with exponential backoff and jitter until MAX_RETRIES is
used up. ``POST_OFFICE['ERROR_HANDLER']`` (a dotted path, like django-mailer's
MAILER_ERROR_HANDLER) can override the classification.
"""

from __future__ import annotations

import datetime
import enum
import logging
import random
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils.module_loading import import_string

from ..conf import settings as po_settings
from ..exceptions import PostOfficeError

if TYPE_CHECKING:
    from ..models import Email

logger = logging.getLogger("post_office")


class ErrorKind(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"


#: Errors that the same attempt would hit again, however often it is retried.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PostOfficeError,
    TemplateSyntaxError,
    TemplateDoesNotExist,
    UnicodeError,
)


def classify(error: BaseException) -> ErrorKind:
    """The default classification (see the module docstring)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in error.recipients.values()]
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return ErrorKind.PERMANENT if permanent else ErrorKind.TRANSIENT
    if isinstance(error, smtplib.SMTPAuthenticationError):
        # Wrong credentials are the sender's configuration, not the email: once they
        # are fixed the email can go, so it waits in the queue.
        return ErrorKind.TRANSIENT
    if isinstance(error, smtplib.SMTPResponseException):
        return ErrorKind.PERMANENT if 500 <= error.smtp_code < 600 else ErrorKind.TRANSIENT
    if isinstance(error, PERMANENT_ERRORS):
        return ErrorKind.PERMANENT
    if isinstance(error, ValueError) and "header" in str(error).lower():
        # Django refuses malformed headers with a ValueError (BadHeaderError).
        return ErrorKind.PERMANENT
    return ErrorKind.TRANSIENT


def is_permanent(error: BaseException) -> bool:
    return classify(error) is ErrorKind.PERMANENT


def _handler() -> Callable[[Any, BaseException], Any] | None:
    path = po_settings.ERROR_HANDLER
    if not path:
        return None
    try:
        return import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"POST_OFFICE['ERROR_HANDLER']: could not import {path!r}: {error}") from error


def check_error_handler() -> None:
    """Raise ImproperlyConfigured now if ERROR_HANDLER cannot be imported (before any email is sent)."""
    _handler()


def classify_for(email: Email, error: BaseException) -> ErrorKind:
    """Classify with the configured hook; it may return 'permanent', 'transient' or None (default)."""
    handler = _handler()
    if handler is not None:
        try:
            verdict = handler(email, error)
            if verdict is not None:
                return ErrorKind(getattr(verdict, "value", verdict))
        except Exception:  # noqa: BLE001 - a bug in the hook must not lose the results written with this one
            logger.exception(
                "POST_OFFICE['ERROR_HANDLER'] %r failed for email %s; using the default classification",
                po_settings.ERROR_HANDLER,
                getattr(email, "pk", None),
            )
    return classify(error)


def backoff(retries_so_far: int) -> datetime.timedelta:
    """Delay before retry number ``retries_so_far + 1``: RETRY_INTERVAL doubled each time, capped, jittered.

    The jitter picks a point between half and all of the delay, so workers that
    failed together (a server outage) do not all come back at the same moment.
    """
    base = po_settings.RETRY_INTERVAL.total_seconds()
    cap = po_settings.MAX_RETRY_INTERVAL.total_seconds()
    delay = min(cap, base * (2 ** min(retries_so_far, 32)))
    return datetime.timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class Decision:
    retry: bool
    kind: ErrorKind
    next_attempt: datetime.datetime | None = None


def decide(email: Email, error: BaseException, now: datetime.datetime) -> Decision:
    """Requeue a transient failure while MAX_RETRIES allows, else fail it."""
    kind = classify_for(email, error)
    if kind is ErrorKind.PERMANENT or email.number_of_retries >= po_settings.MAX_RETRIES:
        return Decision(retry=False, kind=kind)
    return Decision(retry=True, kind=kind, next_attempt=now + backoff(email.number_of_retries))
