"""One delivery pass as a pipeline: the next batch is claimed while the threads send the current one.

The main thread claims, hands jobs to the delivery threads, takes their reports
and records results in small chunks (``FLUSH_EVERY`` emails or
``FLUSH_SECONDS``), each chunk in the transaction of the next claim. It wakes
only when it can act: a chunk to write, or room to claim more.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol, TypeVar

from ..conf import settings as po_settings
from ..models import Email
from ..transport.connections import ConnectionPool
from . import claim
from .do_not_send import screen_claimed
from .stats import Outcome, RunStats
from .threads import Brake, Job, Pace, Reports, collect, deal, run_job
from .transient import retrying

logger = logging.getLogger("post_office")

T = TypeVar("T")

#: Results are written once this many are waiting, or after FLUSH_SECONDS.
FLUSH_EVERY = 100
FLUSH_SECONDS = 0.2
#: A claim that finds nothing while due emails exist (locked by another worker's
#: claim) is tried again this many times, after 50, 100 and 150 ms.
LOCKED_RETRIES = 3
LOCKED_RETRY_SECONDS = 0.05


class Owner(Protocol):
    """What a pass needs of its worker (:class:`post_office.delivery.worker.Worker`)."""

    threads: int
    batch_size: int
    lease: timedelta
    throttle: float
    max_emails: int | None
    max_sent: int | None
    max_failures: int | None
    max_seconds: float | None
    stats: RunStats

    @property
    def stopping(self) -> bool: ...

    def paused(self) -> bool: ...

    def limit_reached(self, unrecorded: list[Outcome] | None = None) -> bool: ...

    def claim(
        self, limit: int, ids: Iterable[int] | None = None, skip_aliases: Iterable[str] = ()
    ) -> tuple[str, list[Email]]: ...

    def record_then(self, token: str | None, outcomes: list[Outcome], body: Callable[[], T]) -> T: ...

    def record(self, token: str | None, outcomes: list[Outcome]) -> None: ...


class Pipeline:
    """The state of one pass of a worker and its steps; ``run()`` returns how many emails it claimed."""

    def __init__(self, worker: Owner, executor: ThreadPoolExecutor, pool: ConnectionPool) -> None:
        self.worker, self.executor, self.pool = worker, executor, pool
        # Claim more once fewer than this many emails are waiting or in flight.
        self.low_water = max(2 * worker.threads, worker.batch_size // 2)
        #: Emails handed to the threads and not reported back yet, by id.
        self.in_flight: dict[int, tuple[Job, Email]] = {}
        #: Each email's outcome arrives here as soon as its reply does (None: not attempted).
        self.completed = Reports()
        #: Outcomes not written yet.
        self.buffer: list[Outcome] = []
        self.last_flush = time.monotonic()
        #: When each claim's batch must be done (BATCH_DELIVERY_TIMEOUT), by token.
        self.deadlines: dict[str, float] = {}
        self.claimed = 0
        self.queue_empty = False
        self.skipped_claims = 0
        # Without limits to watch, the loop wakes only when it has something to do.
        self.watch_each = any(limit is not None for limit in (worker.max_emails, worker.max_sent, worker.max_failures))
        failures = worker.max_failures
        stats = worker.stats
        self.brake = Brake(
            lambda: worker.stopping or (worker.max_seconds is not None and worker.stats.elapsed >= worker.max_seconds),
            None if failures is None else failures - stats.failed - stats.requeued,
        )
        self.pace = Pace(worker.threads)
        # A live worker renews its leases three times per lease: they run out only when it died.
        self.renew_every = worker.lease.total_seconds() / 3
        self.next_renewal = time.monotonic() + self.renew_every

    def run(self) -> int:
        try:
            while True:
                self.claim_more()
                if not self.in_flight:
                    if not self.retry_due_now():
                        break
                    continue
                self.take_reports()
                self.flush_if_due()
                self.renew_leases()
                self.give_back_overdue()
                if self.worker.limit_reached(self.buffer):
                    self.give_back()
        except BaseException:
            # A database error (or a signal) mid-pass: emails not started yet must not
            # go out unrecorded; they stay claimed and their lease returns them.
            self.cancel_all()
            raise
        self.flush()
        return self.claimed

    # -- the steps -----------------------------------------------------------

    def claim_more(self) -> None:
        """Claim and hand out batches while there is room, the queue has mail and no limit stops the run."""
        worker = self.worker
        while not self.queue_empty and len(self.in_flight) < self.low_water and not worker.limit_reached(self.buffer):
            if worker.paused():
                worker.stats.stopped_because = "delivery is paused"
                self.queue_empty = True
                return
            limit = self.claim_limit()
            if limit <= 0:
                return  # emails in flight may still fail and leave room for more
            # Results waiting to be written go in the claim's transaction.
            # Nothing more for an alias whose connection failed: its emails stay queued.
            claim_batch = functools.partial(worker.claim, limit, skip_aliases=list(self.brake.blocked))
            token, emails = worker.record_then(None, self.buffer, claim_batch)
            self.buffer, self.last_flush = [], time.monotonic()
            if not emails:
                if self.skipped_claims < LOCKED_RETRIES and claim.due_but_locked():
                    # Another worker's claim holds them for a moment: look again shortly.
                    self.skipped_claims += 1
                    time.sleep(LOCKED_RETRY_SECONDS * self.skipped_claims)
                    continue
                self.queue_empty = True
                return
            self.skipped_claims = 0
            self.claimed += len(emails)
            self.hand_out(token, emails)

    def hand_out(self, token: str, emails: list[Email]) -> None:
        """Deal a claimed batch into jobs and start them on the delivery threads."""
        # Recipients put on the do-not-send list since enqueueing are skipped; emails left
        # with nobody are not sent, and fail when this buffer is written.
        self.buffer.extend(screen_claimed(emails, token))
        self.deadlines[token] = time.monotonic() + po_settings.BATCH_DELIVERY_TIMEOUT
        for job in deal(token, emails, self.pace.width()):
            for email in job.emails:
                self.in_flight[email.pk] = (job, email)
            job.future = self.executor.submit(
                run_job, job, self.brake, self.pace, self.pool, self.worker.throttle, self.completed.put
            )

    def claim_limit(self) -> int:
        """How many emails the next claim may take without overshooting --max-emails or MAX_BATCH."""
        worker, unrecorded, in_flight = self.worker, self.buffer, len(self.in_flight)
        limit = worker.batch_size
        if worker.max_emails is not None:
            limit = min(limit, worker.max_emails - worker.stats.attempted - len(unrecorded) - in_flight)
        if worker.max_sent is not None:
            # Every email in flight may still be sent: claim only what could be sent within the limit.
            unrecorded_sent = sum(1 for outcome in unrecorded if outcome.error is None)
            limit = min(limit, worker.max_sent - worker.stats.sent - unrecorded_sent - in_flight)
        return limit

    def retry_due_now(self) -> bool:
        """Nothing in flight: True to go on (a failure not yet written may be due again at once), False to end."""
        if not any(outcome.failed for outcome in self.buffer) or self.worker.limit_reached(self.buffer):
            return False
        self.flush()
        self.queue_empty = False
        return True

    def take_reports(self) -> None:
        """Wait for reports from the threads; release the emails reported as never attempted."""
        wake_at = 1
        if not self.watch_each:
            # Wake when the buffer is due to be written or when it is time to claim more.
            in_flight = len(self.in_flight)
            claim_at = in_flight if self.queue_empty else in_flight - self.low_water + 1
            wake_at = max(1, min(FLUSH_EVERY - len(self.buffer), claim_at))
        skipped: dict[str, list[Email]] = {}
        for report in self.completed.take(wake_at, timeout=FLUSH_SECONDS):
            collect(report, self.in_flight, self.buffer, skipped)
        for token, emails in skipped.items():
            retrying(functools.partial(claim.release, token, emails), "giving back unstarted emails")

    def flush_if_due(self) -> None:
        buffer = self.buffer
        if len(buffer) >= FLUSH_EVERY or (buffer and time.monotonic() - self.last_flush >= FLUSH_SECONDS):
            if any(outcome.failed for outcome in buffer):
                self.queue_empty = False  # a requeued email may be due again at once: look again
            self.flush()

    def flush(self) -> None:
        self.worker.record(None, self.buffer)
        self.buffer, self.last_flush = [], time.monotonic()

    def renew_leases(self) -> None:
        """When due, extend the leases of the claims whose emails are still in flight or not yet recorded.

        A claim's lease is short (LEASE_SECONDS), so the emails of a worker that
        died are taken over within seconds; a live one keeps them, however slow
        the server, because its main thread renews them here while the threads send.
        """
        now = time.monotonic()
        if now < self.next_renewal:
            return
        self.next_renewal = now + self.renew_every
        held: dict[str, set[int]] = {}
        for pk, (job, _email) in self.in_flight.items():
            held.setdefault(job.token, set()).add(pk)
        for outcome in self.buffer:
            if outcome.token:
                held.setdefault(outcome.token, set()).add(outcome.email.pk)
        retrying(lambda: claim.renew(held, self.worker.lease), "a lease renewal")

    def give_back_overdue(self) -> None:
        """Give back the unstarted emails of batches past BATCH_DELIVERY_TIMEOUT."""
        now = time.monotonic()
        overdue = {token for token, deadline in self.deadlines.items() if deadline <= now}
        if overdue & {job.token for job, _email in self.in_flight.values()}:
            logger.error("Batch delivery timed out after %ss", po_settings.BATCH_DELIVERY_TIMEOUT)
            self.give_back(only=overdue)
            self.queue_empty = False  # what was given back is due again: later claims take it

    def give_back(self, only: set[str] | None = None) -> None:
        """Release emails not started yet; wait for the ones being sent and keep their outcomes.

        Threads cannot be interrupted mid-send: a running job finishes its
        current email and reports the rest as not attempted; the leases guard
        the rows meanwhile.
        """
        in_flight = self.in_flight
        jobs = {job for job, _email in in_flight.values() if only is None or job.token in only}
        unstarted: dict[str, list[Email]] = {}
        for job in jobs:
            job.cancelled = True
            if job.future is not None and job.future.cancel():
                for email in job.emails:
                    if in_flight.pop(email.pk, None) is not None:
                        unstarted.setdefault(job.token, []).append(email)
        while any(job in jobs for job, _email in in_flight.values()):
            # Never a wait without a timeout: a signal that reached another thread
            # (a second SIGTERM: exit now) is handled when this thread wakes.
            for report in self.completed.take(1, timeout=FLUSH_SECONDS):
                collect(report, in_flight, self.buffer, unstarted)
            self.renew_leases()  # the emails still being sent stay this worker's
        for token, emails in unstarted.items():
            retrying(functools.partial(claim.release, token, emails), "giving back unstarted emails")

    def cancel_all(self) -> None:
        """Start no more emails: the ones not started stay claimed until their lease returns them."""
        for job, _email in self.in_flight.values():
            job.cancelled = True
            if job.future is not None:
                job.future.cancel()
