"""The do-not-send list at delivery: checked again for each claimed batch, in one query.

An address put on the list after an email was queued is skipped when the email
is sent: it is taken off the email (in the row, under the claim), with a Log
row naming it, and the email goes to the others. When nobody is left, the email
fails for good (:class:`~post_office.exceptions.NoRecipientLeft`) and keeps its
recipients. After a partial delivery only the recipients still to deliver to
(``pending_recipients``) are considered: the others already have the email.
Enqueueing applies the same rules (:mod:`post_office.enqueue.do_not_send`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction

from ..choices import STATUS
from ..exceptions import NoRecipientLeft
from ..models import DoNotSendEntry, Email, Log, do_not_send_key
from .stats import Outcome

#: The Log's exception type for a recipient skipped because it is on the list.
SKIPPED = "DoNotSend"
#: The Log's exception type for an email none of whose recipients may be sent to.
NOBODY_LEFT = NoRecipientLeft.__name__


@dataclass
class Screened:
    """What the list did to one email: who was skipped (address, reason) and whether anyone is left."""

    email: Email
    skipped: list[tuple[str, str]] = field(default_factory=list)
    nobody_left: bool = False


def considered(email: Email) -> list[str]:
    """The recipients an attempt would go to: the pending ones after a partial delivery, else everyone."""
    return list(email.pending_recipients or [*email.to, *email.cc, *email.bcc])


def listed_among(emails: Sequence[Email]) -> dict[str, str]:
    """The listed addresses among these emails' recipients, ``{key: reason}``: one indexed query."""
    return DoNotSendEntry.objects.listed(address for email in emails for address in considered(email))


def narrow(email: Email, listed: dict[str, str]) -> Screened | None:
    """Take the listed recipients off one email, in memory; None when it has none of them.

    With nobody left, the email is left as it is and ``nobody_left`` is set.
    """
    skipped = [(address, listed[key]) for address in considered(email) if (key := do_not_send_key(address)) in listed]
    if not skipped:
        return None
    result = Screened(email, skipped)
    gone = {do_not_send_key(address) for address, _reason in skipped}
    if email.pending_recipients:
        pending = [address for address in email.pending_recipients if do_not_send_key(address) not in gone]
        if not pending:
            result.nobody_left = True
        else:
            email.pending_recipients = pending
        return result
    kept = {name: [a for a in getattr(email, name) if do_not_send_key(a) not in gone] for name in ("to", "cc", "bcc")}
    if any(kept.values()):
        email.to, email.cc, email.bcc = kept["to"], kept["cc"], kept["bcc"]
    else:
        result.nobody_left = True
    return result


def skipped_text(address: str, reason: str) -> str:
    """The Log message of a skipped recipient."""
    return f"{address} is on the do-not-send list (reason: {reason}); not sent to this recipient"


def log_rows(screened: Iterable[Screened], worker: str = "", final: bool = True) -> list[Log]:
    """Log rows for screened (saved) emails: one per skipped recipient, and with ``final`` one per email left empty."""
    rows = []
    for item in screened:
        pk = item.email.pk
        for address, reason in item.skipped:
            rows.append(
                Log(email_id=pk, status=STATUS.failed, exception_type=SKIPPED, message=skipped_text(address, reason))
            )
        if final and item.nobody_left:
            error = NoRecipientLeft([address for address, _reason in item.skipped])
            rows.append(Log(email_id=pk, status=STATUS.failed, exception_type=NOBODY_LEFT, message=str(error)))
    for row in rows:
        row.worker = worker
    return rows


def screen_claimed(emails: list[Email], token: str | None, worker: str = "", write: bool = True) -> list[Outcome]:
    """Apply the list to claimed emails before they are sent; return the outcomes of those with nobody left.

    Those are taken out of ``emails`` (they are not sent; recording them fails
    them for good). The others lose their listed recipients, in the row too,
    where the claim (``token``) still holds it. ``write=False`` changes the
    emails in memory only (``Email.dispatch(commit=False)``).
    """
    if not emails:
        return []
    listed = listed_among(emails)
    if not listed:
        return []
    screened = [item for email in emails if (item := narrow(email, listed)) is not None]
    if write:
        _store(screened, token, worker)
    empty = {item.email.pk for item in screened if item.nobody_left}
    outcomes = [
        Outcome(item.email, NoRecipientLeft([address for address, _reason in item.skipped]), token)
        for item in screened
        if item.nobody_left
    ]
    emails[:] = [email for email in emails if email.pk not in empty]
    return outcomes


def _store(screened: list[Screened], token: str | None, worker: str) -> None:
    """Write the narrowed recipients (where the claim still holds the row) and the skipped recipients' Log rows."""
    with transaction.atomic():
        for item in screened:
            if item.nobody_left:
                continue  # recorded as a failure; it keeps its recipients
            email = item.email
            rows = Email.objects.filter(pk=email.pk)
            if token:
                rows = rows.filter(claimed_by=token, status=STATUS.sending)
            rows.update(to=email.to, cc=email.cc, bcc=email.bcc, pending_recipients=email.pending_recipients)
        # The failure of an email left empty gets its own Log row when it is recorded.
        Log.objects.bulk_create(log_rows(screened, worker=token or worker, final=False))
