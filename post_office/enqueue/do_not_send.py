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

While the list is empty (most sites, most of the time) that check finds
nothing at some cost to the database, so a process remembers for
``DO_NOT_SEND_EMPTY_CACHE`` seconds that it found the list empty (the checking
INSERT reports it, :func:`found_empty`) and inserts without the check
meanwhile (:func:`known_empty`). An entry saved in this process forgets it at
once (and again when its transaction commits); one added by another process is
seen here within those seconds, and until then delivery, which always reads
the list, skips the address (:mod:`post_office.delivery.do_not_send`).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections, transaction
from django.db.models.signals import post_save

from ..choices import STATUS
from ..delivery.do_not_send import Screened, listed_among, log_rows, narrow
from ..models import DoNotSendEntry, Email, Log

__all__ = ["Screened", "forget_empty", "found_empty", "known_empty", "list_generation", "screen", "screened_logs"]

#: Per database alias: until when (``time.monotonic()``) this process takes the list as empty.
_empty_until: dict[str, float] = {}
#: Per database alias, a reading taken inside a transaction and not committed yet: that transaction's
#: on-commit list (Django starts a new one when the transaction ends or a savepoint rolls back), until, generation.
_pending: dict[str, tuple[list[Any], float, int]] = {}
#: Counts the entries saved in this process: a reading taken before one is not remembered.
_generation = itertools.count()
_current = [next(_generation)]


def known_empty(using: str) -> bool:
    """Whether this process found the list empty on ``using`` less than ``DO_NOT_SEND_EMPTY_CACHE`` seconds ago.

    A reading taken in the current transaction counts for the rest of it (not
    after a savepoint rolled back); outside it, only once it committed.
    """
    now = time.monotonic()
    until = _empty_until.get(using)
    if until is not None and now < until:
        return True
    pending = _pending.get(using)
    if pending is None:
        return False
    hooks, until, generation = pending
    connection = connections[using]
    return (
        connection.in_atomic_block and hooks is connection.run_on_commit and generation == _current[0] and now < until
    )


def list_generation() -> int:
    """Taken before a statement reads the list; :func:`found_empty` is given it back."""
    return _current[0]


def found_empty(using: str, seconds: float, generation: int) -> None:
    """A statement that started at ``generation`` found the list empty: remember it for ``seconds``.

    Inside a transaction, for the rest of it and, once it commits, for the
    process (a rolled back removal must not leave the list taken as empty);
    never if an entry was saved since.
    """
    until = time.monotonic() + seconds
    connection = connections[using]
    if connection.in_atomic_block:
        transaction.on_commit(functools.partial(_remember, using, until, generation), using=using)
        _pending[using] = (connection.run_on_commit, until, generation)
    else:
        _remember(using, until, generation)


def _remember(using: str, until: float, generation: int) -> None:
    _pending.pop(using, None)
    if generation == _current[0]:
        _empty_until[using] = until


def forget_empty() -> None:
    """Take the list as possibly not empty again, on every database (checked by the next INSERT)."""
    _current[0] = next(_generation)
    _empty_until.clear()
    _pending.clear()


def _entry_saved(sender: Any, instance: DoNotSendEntry, using: str, **kwargs: Any) -> None:
    forget_empty()
    # A statement of another connection may read the list before this entry commits: forget once more then.
    transaction.on_commit(forget_empty, using=using)


post_save.connect(_entry_saved, sender=DoNotSendEntry, dispatch_uid="post_office.enqueue.do_not_send")


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
