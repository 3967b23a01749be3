"""The delivery worker: claim a batch in the database, send it outside any transaction, record results promptly.

A claim marks emails ``sending`` with a lease (:mod:`~post_office.delivery.claim`);
the pass runs as a pipeline (:mod:`~post_office.delivery.pipeline`) over
delivery threads (:mod:`~post_office.delivery.threads`), and results are
written in small chunks, only where the claim token still matches
(:mod:`~post_office.delivery.record`). A crash therefore re-sends at most the
emails that were in flight, and an expired lease puts the email back in the
queue for any worker to take.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TypeVar

from django.core.mail.backends.base import BaseEmailBackend

from ..choices import STATUS
from ..conf import settings as po_settings
from ..models import DeliverySwitch, Email
from ..transport.connections import ConnectionPool, GivenConnection
from ..transport.failures import ConnectionFailed
from . import claim, expiry
from .do_not_send import screen_claimed
from .pipeline import Pipeline
from .record import Recorder
from .retry import check_error_handler
from .stats import Outcome, RunStats
from .threads import send_one

logger = logging.getLogger("post_office")

T = TypeVar("T")

#: How often a running pass looks at the pause switch.
PAUSE_CHECK_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Deliver due emails until the queue is empty, a limit is reached or ``stop()`` is called.

    Use ``run()`` for one pass (cron, tests). A long-running loop keeps one
    Worker open (``with worker:``) and calls ``run_pass()`` repeatedly, so its
    threads and SMTP connections live across passes.
    """

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        threads: int | None = None,
        log_level: int | None = None,
        max_emails: int | None = None,
        max_seconds: float | None = None,
        max_sent: int | None = None,
        max_failures: int | None = None,
        throttle: float | None = None,
        lease_seconds: float | None = None,
        on_progress: Callable[[RunStats], None] | None = None,
    ) -> None:
        self.batch_size = batch_size or po_settings.BATCH_SIZE
        self.threads = threads or po_settings.THREADS_PER_PROCESS
        self.log_level = po_settings.LOG_LEVEL if log_level is None else log_level
        self.max_emails = max_emails
        self.max_seconds = max_seconds
        self.max_sent = po_settings.MAX_BATCH if max_sent is None else max_sent
        self.max_failures = po_settings.MAX_DEFERRED if max_failures is None else max_failures
        self.throttle = po_settings.THROTTLE if throttle is None else throttle
        self.lease = timedelta(seconds=lease_seconds or po_settings.LEASE_SECONDS)
        #: For claims nobody renews (deliver_ids sends in the caller's thread): long enough for any send.
        self.unrenewed_lease = max(self.lease, timedelta(seconds=2 * po_settings.BATCH_DELIVERY_TIMEOUT))
        # A bad ERROR_HANDLER path must fail now, not after emails were sent but before they are recorded.
        check_error_handler()
        self.name = worker_name()
        self._recorder = Recorder(self.log_level, RunStats(), on_progress, worker=self.name)
        self._stop = threading.Event()
        self._pool: ConnectionPool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pause_checked, self._pause_seen = -PAUSE_CHECK_SECONDS, False

    @property
    def stats(self) -> RunStats:
        """The figures of the current run (its recorder counts into them)."""
        return self._recorder.stats

    @stats.setter
    def stats(self, stats: RunStats) -> None:
        self._recorder.stats = stats

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Worker:
        self._pool = ConnectionPool(default_limit=self.threads)
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="post_office")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            # After an error in the loop, emails not started yet are not sent unrecorded:
            # they stay claimed and their lease returns them to the queue.
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._pool is not None:
            self._pool.close_all()
        self._executor = self._pool = None

    def paused(self) -> bool:
        """The pause switch, read at most once a second while a pass runs (a pause takes effect within a second)."""
        now = time.monotonic()
        if now >= self._pause_checked + PAUSE_CHECK_SECONDS:
            self._pause_checked, self._pause_seen = now, DeliverySwitch.is_paused()
        return self._pause_seen

    def stop(self) -> None:
        """Stop gracefully: claim nothing more, finish what is in flight, give back the rest."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the run -----------------------------------------------------------

    def run(self) -> RunStats:
        """Deliver every due email once; return what happened."""
        self.stats = RunStats()
        with self:
            self.run_pass()
        logger.info(
            "post_office run: %s",
            self.stats.summary(),
            extra={
                "sent": self.stats.sent,
                "failed": self.stats.failed,
                "requeued": self.stats.requeued,
                "expired": self.stats.expired,
            },
        )
        return self.stats

    def run_pass(self) -> int:
        """Claim and deliver until the queue is empty or a limit stops the run.

        Delivery is a pipeline: the next batch is claimed while the threads are
        still sending the current one, so they never wait for the database.
        Returns how many emails this pass claimed.
        """
        assert self._executor is not None and self._pool is not None, "use 'with worker:'"
        self._pause_checked = -PAUSE_CHECK_SECONDS  # each pass starts from the switch's current state
        self.requeue_stale_leases()
        self.fail_expired()
        return Pipeline(self, self._executor, self._pool).run()

    def limit_reached(self, unrecorded: list[Outcome] | None = None) -> bool:
        """True when the run must stop; ``unrecorded`` outcomes (not yet written) count too."""
        stats = self.stats
        pending = unrecorded or []
        pending_failures = pending_sent = 0
        for outcome in pending:
            if outcome.error is None:
                pending_sent += 1
            elif outcome.failed:
                pending_failures += 1
        reason = ""
        if self.stopping:
            reason = "stop requested"
        elif self.max_emails is not None and stats.attempted + pending_sent + pending_failures >= self.max_emails:
            reason = f"--max-emails {self.max_emails}"
        elif self.max_sent is not None and stats.sent + pending_sent >= self.max_sent:
            reason = f"MAX_BATCH {self.max_sent}"
        elif self.max_failures is not None and stats.failed + stats.requeued + pending_failures >= self.max_failures:
            reason = f"MAX_DEFERRED {self.max_failures}"
        elif self.max_seconds is not None and stats.elapsed >= self.max_seconds:
            reason = f"--max-seconds {self.max_seconds:g}"
        if reason:
            stats.stopped_because = reason
        return bool(reason)

    def deliver_ids(self, ids: Iterable[int]) -> RunStats:
        """Claim these emails (if still queued) and deliver them now, in this thread."""
        ids = list(ids)
        if DeliverySwitch.is_paused():
            return self.stats  # they stay queued; a worker sends them once delivery resumes
        # Sent one by one in this thread, nothing renews the claim meanwhile: it gets the long lease.
        token, emails = claim.claim(self.name, self.unrenewed_lease, len(ids), ids)
        blocked = screen_claimed(emails, token)
        pool = ConnectionPool()
        try:
            self.record(token, blocked + [send_one(email, pool, throttle=0) for email in emails])
        finally:
            pool.close_all()
        return self.stats

    # -- claiming and recording ----------------------------------------------

    def claim(
        self, limit: int, ids: Iterable[int] | None = None, skip_aliases: Iterable[str] = ()
    ) -> tuple[str, list[Email]]:
        """Take up to ``limit`` due emails (of ``ids`` if given, for no alias of ``skip_aliases``); return the token and them."""
        return claim.claim(self.name, self.lease, limit, ids, skip_aliases)

    def release(self, token: str, emails: Iterable[Email]) -> None:
        """Give back claimed emails that were never attempted."""
        claim.release(token, emails)

    def requeue_stale_leases(self) -> int:
        """Return emails whose worker died (lease expired) to the queue."""
        return claim.requeue_stale_leases()

    def fail_expired(self) -> None:
        """Mark queued emails past their expiry as failed (they are never sent)."""
        self.stats.expired += expiry.fail_expired(self.name, log=self.log_level >= 1)

    def record(self, token: str | None, outcomes: list[Outcome]) -> None:
        """Write sent / requeued / failed statuses and Log rows for a chunk of attempts."""
        self._recorder.record(token, outcomes)

    def record_then(self, token: str | None, outcomes: list[Outcome], body: Callable[[], T]) -> T:
        """Write a chunk of results and run ``body`` in the same transaction (again after a deadlock), then signal."""
        return self._recorder.record_then(token, outcomes, body)


def dispatch_one(
    email: Email, *, log_level: int | None = None, commit: bool = True, connection: BaseEmailBackend | None = None
) -> int:
    """Send one email now, whatever its status (django-post_office's ``Email.dispatch``).

    Through ``connection`` when given (left open), else through a connection of
    the email's backend alias. With ``commit=False`` nothing is written, and a
    failed attempt raises its error, as django-post_office's did.
    """
    worker = Worker(log_level=log_level)
    emails = [email]
    blocked = screen_claimed(emails, None, worker=worker.name, write=commit)
    pool = ConnectionPool() if connection is None else GivenConnection(connection)
    try:
        outcome = blocked[0] if blocked else send_one(email, pool)  # type: ignore[arg-type]
    finally:
        pool.close_all()
    if not commit and outcome.error is not None:
        # The backend's own error, not the wrapper that says which connection failed to open.
        raise outcome.error.error if isinstance(outcome.error, ConnectionFailed) else outcome.error
    if commit:
        worker.record(None, [outcome])
    elif outcome.error is None:
        email.status = STATUS.sent
    elif not outcome.held:  # a connection that failed leaves it as it was
        email.status = STATUS.failed
    return email.status
