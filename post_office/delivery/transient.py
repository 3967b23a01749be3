"""A worker's writes that the database refused for a moment are made again.

A database breaks a deadlock by rolling one of the transactions back
(PostgreSQL 40P01, MariaDB/MySQL 1213), gives up a lock wait after a while
(MariaDB/MySQL 1205, ``innodb_lock_wait_timeout``) and refuses a serializable
transaction that lost a race (40001). Nothing of the refused transaction is
kept, so the same write can simply run again. A worker's writes (results, its
next claim, lease renewals) are short transactions of their own; ending the
pass on such an error instead would leave the emails it had sent unrecorded,
and their lease would return them to the queue to be sent a second time.

Only a transaction this code opens is tried again: inside a caller's
``atomic()`` block the whole block was rolled back and only the caller can
start it over, so the error goes up. Other database errors (a lost
connection, a constraint) go up too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, connection

logger = logging.getLogger("post_office")

T = TypeVar("T")

#: Attempts after the first, and the first pause (seconds; doubled each time, with jitter).
RETRIES = 4
FIRST_PAUSE = 0.05

#: SQLSTATE classes of PostgreSQL's refusals: deadlock detected, serialization failure.
_SQLSTATES = frozenset({"40P01", "40001"})
#: MariaDB/MySQL error numbers: deadlock found, lock wait timeout exceeded.
_MYSQL_CODES = frozenset({1213, 1205})


def is_transient(error: BaseException) -> bool:
    """Whether the database refused the transaction for the moment only (the write may run again)."""
    cause = error.__cause__ or error
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if state in _SQLSTATES:
        return True
    args: tuple[object, ...] = tuple(getattr(cause, "args", ()))
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_CODES


def retrying(write: Callable[[], T], what: str) -> T:
    """Run ``write`` (which opens its own transaction) again when the database refused it for the moment."""
    for attempt in range(RETRIES + 1):
        try:
            return write()
        except DatabaseError as error:
            if attempt == RETRIES or connection.in_atomic_block or not is_transient(error):
                raise
            pause = FIRST_PAUSE * 2**attempt * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
            logger.warning(
                "The database refused %s for the moment (%s); trying again in %.2fs",
                what,
                error,
                pause,
                extra={"attempt": attempt + 1},
            )
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
