"""Waking idle runners on PostgreSQL: a connection of their own LISTENing for new mail."""

from __future__ import annotations

import logging
import select
import time
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from ..notify import CHANNEL

logger = logging.getLogger("post_office")

#: Longest pause between attempts to reopen the LISTEN connection (seconds).
LISTEN_RETRY_MAX_SLEEP = 60.0


class Listener:
    """A dedicated autocommit psycopg connection LISTENing on :data:`~post_office.notify.CHANNEL`.

    Enqueueing sends ``NOTIFY`` in the caller's transaction (no trigger, so no
    DDL rights are needed). Connection failures are logged and retried later;
    in the meantime the runner simply polls.
    """

    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.alias = alias
        self.conn: Any = None
        self._retry_at = 0.0
        self._failures = 0

    def fileno(self) -> int | None:
        return self.conn.fileno() if self.conn is not None else None

    def ensure(self) -> bool:
        """Open and LISTEN unless already done (or a recent attempt failed); True when listening."""
        if self.conn is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            logger.warning("psycopg 3 is not installed: runmailer polls instead of LISTENing for new mail")
            self._retry_at = float("inf")
            return False
        params = dict(connections[self.alias].get_connection_params())
        # Django's own cursor class and adapters do not belong on this connection.
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.setdefault("connect_timeout", 10)
        try:
            conn = psycopg.connect(autocommit=True, **params)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except (psycopg.Error, OSError) as error:
            self._failures += 1
            delay = min(LISTEN_RETRY_MAX_SLEEP, 2.0**self._failures)
            self._retry_at = time.monotonic() + delay
            logger.warning("Cannot LISTEN for new mail (%s); polling, next attempt in %.0fs", error, delay)
            return False
        if self._failures:
            logger.info("Listening for new mail again")
        self.conn, self._failures = conn, 0
        return True

    def seconds_to_retry(self) -> float | None:
        """How long until the next attempt to reconnect; None when connected or not retrying."""
        if self.conn is not None or self._retry_at == float("inf"):
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def retry_soon(self) -> None:
        """Drop the connection and reconnect at the next chance (the database is back)."""
        self.close()
        if self._retry_at != float("inf"):
            self._retry_at = 0.0

    def drain(self) -> int:
        """Consume waiting notifications; return how many. A broken connection is closed."""
        import psycopg

        received = 0
        try:
            # A server that ended the connection first sends an error message
            # (read here without complaint), then EOF: read until nothing is left.
            while self.conn is not None:
                received += sum(1 for _ in self.conn.notifies(timeout=0))
                if not select.select([self.conn.fileno()], [], [], 0)[0]:
                    break
        except (psycopg.Error, OSError) as error:
            logger.warning("Lost the LISTEN connection (%s); reconnecting", error)
            self.close()
        return received

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail; it is gone anyway
                pass
        self.conn = None
