"""The do-not-send list at enqueue: listed recipients are taken off an email before it is stored.

Every entry point (``send``, ``send_many``, the backend, the helpers, the
admin) stores through :func:`post_office.enqueue.store.persist`, which calls
:func:`screen` once per call: one indexed query for the addresses of all its
emails. A listed recipient is removed from ``to``/``cc``/``bcc`` and gets a
Log row; an email with nobody left keeps its recipients (so the admin shows who
it was for), is stored ``failed`` with a ``NoRecipientLeft`` Log row, and is
never delivered. Delivery checks the list again, with the same rules
(:mod:`post_office.delivery.do_not_send`).

For one email without attachments (``mail.send``'s case) the check is first
made inside the INSERT (:mod:`post_office.enqueue.insert`): only when that
statement finds a listed recipient does :func:`screen` run for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..choices import STATUS
from ..delivery.do_not_send import Screened, listed_among, log_rows, narrow
from ..models import Email, Log

__all__ = ["Screened", "screen", "screened_logs"]


def screen(emails: Sequence[Email]) -> list[Screened]:
    """Take listed recipients off these unsaved emails (one query); return the emails the list touched.

    An email with nobody left is marked ``failed``.
    """
    listed = listed_among(emails) if emails else {}
    if not listed:
        return []
    screened = [item for email in emails if (item := narrow(email, listed)) is not None]
    for item in screened:
        if item.nobody_left:
            item.email.status = STATUS.failed
    return screened


def screened_logs(screened: Sequence[Screened]) -> list[Log]:
    """The Log rows of screened emails, once they are saved."""
    return log_rows(screened)
