"""Delivery: claim a batch in the database, send it outside any transaction, record results promptly.

A claim marks emails ``sending`` with a lease (``claimed_by`` is a token unique to
the claim, ``lease_expires_at`` its end). Results are written in small chunks,
and only where the claim token still matches, so a worker whose lease ran out
never overwrites the result of the worker that took the email over. A crash
therefore re-sends at most the emails that were in flight, and an expired lease
puts the email back in the queue for any worker to take.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Case, F, JSONField, Model, Q, QuerySet, Value, When
from django.utils import timezone

from .conf import settings as po_settings
from .connections import ConnectionPool
from .models import CLAIMABLE, STATUS, Attachment, DeliverySwitch, Email, EmailTemplate, Log
from .ratelimit import wait_for_slot
from .retry import check_error_handler, decide
from .signals import email_failed, email_sent
from .smtp import ConnectionBroken
from .wire import Wire, serialize

logger = logging.getLogger("post_office")

#: Results are written once this many are waiting, or after FLUSH_SECONDS.
FLUSH_EVERY = 100
FLUSH_SECONDS = 0.2
#: A claim that finds nothing while due emails exist (locked by another worker's
#: claim) is tried again this many times, after 50, 100 and 150 ms.
LOCKED_RETRIES = 3
LOCKED_RETRY_SECONDS = 0.05
#: How often a running pass looks at the pause switch.
PAUSE_CHECK_SECONDS = 1.0


@dataclass
class Outcome:
    email: Email
    error: BaseException | None = None
    #: The claim under which the attempt was made (None: the token passed to record()).
    token: str | None = None


def _with_token(outcome: Outcome, token: str) -> Outcome:
    outcome.token = token
    return outcome


@dataclass
class RunStats:
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    expired: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped_because: str = ""

    @property
    def attempted(self) -> int:
        return self.sent + self.failed + self.requeued

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        rate = self.attempted / self.elapsed if self.elapsed > 0 else 0.0
        text = (
            f"{self.sent} sent, {self.failed} failed, {self.requeued} requeued, {self.expired} expired "
            f"in {self.elapsed:.2f}s ({rate:.1f} emails/s)"
        )
        return f"{text}; stopped: {self.stopped_because}" if self.stopped_because else text

    def add(self, other: RunStats) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.requeued += other.requeued
        self.expired += other.expired


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
        self.on_progress = on_progress
        # A bad ERROR_HANDLER path must fail now, not after emails were sent but before they are recorded.
        check_error_handler()
        self.name = worker_name()
        self.stats = RunStats()
        self._stop = threading.Event()
        self._pool: ConnectionPool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pause_checked, self._pause_seen = -PAUSE_CHECK_SECONDS, False

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

    def _paused(self) -> bool:
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
        return self._pipeline()

    def _limit_reached(self, unrecorded: list[Outcome] | None = None) -> bool:
        """True when the run must stop; ``unrecorded`` outcomes (not yet written) count too."""
        stats = self.stats
        pending = unrecorded or []
        pending_failures = sum(1 for outcome in pending if outcome.error is not None)
        reason = ""
        if self.stopping:
            reason = "stop requested"
        elif self.max_emails is not None and stats.attempted + len(pending) >= self.max_emails:
            reason = f"--max-emails {self.max_emails}"
        elif self.max_sent is not None and stats.sent + len(pending) - pending_failures >= self.max_sent:
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
        token, emails = self.claim(len(ids), ids=ids)
        pool = ConnectionPool()
        try:
            self.record(token, [send_one(email, pool, throttle=0) for email in emails])
        finally:
            pool.close_all()
        return self.stats

    # -- claiming ----------------------------------------------------------

    def requeue_stale_leases(self) -> int:
        """Return emails whose worker died (lease expired) to the queue."""
        count = Email.objects.stale_leases().update(
            status=STATUS.requeued, claimed_by="", lease_expires_at=None, last_updated=timezone.now()
        )
        if count:
            logger.warning("Requeued %d emails whose lease expired", count, extra={"count": count})
        return count

    def fail_expired(self) -> None:
        """Mark queued emails past their expiry as failed (they are never sent)."""
        while True:
            now = timezone.now()
            ids = list(Email.objects.expired(now).values_list("id", flat=True)[:1000])
            if not ids:
                return
            # Two workers starting together select the same ids: tag the rows this
            # worker's UPDATE really changed, so each expired email gets one Log.
            token = f"{self.name}:expired:{uuid.uuid4().hex[:16]}"
            updated = Email.objects.filter(id__in=ids, status__in=CLAIMABLE).update(
                status=STATUS.failed, claimed_by=token, last_updated=now
            )
            if updated:
                mine = Email.objects.filter(id__in=ids, claimed_by=token)
                if self.log_level >= 1:
                    Log.objects.bulk_create(
                        Log(
                            email_id=pk, status=STATUS.failed, exception_type="Expired", message="expires_at has passed"
                        )
                        for pk in mine.values_list("id", flat=True)
                    )
                mine.update(claimed_by="")
            self.stats.expired += updated

    def claim(
        self, limit: int, ids: Iterable[int] | None = None, record: list[Outcome] | None = None
    ) -> tuple[str, list[Email]]:
        """Take up to ``limit`` due emails for this worker; return the claim token and them.

        ``record``: results to write in the same transaction (see ``recording``).
        """
        token = f"{self.name}:{uuid.uuid4().hex[:16]}"
        if limit <= 0:
            return token, []
        now = timezone.now()
        claim_values = {
            "status": STATUS.sending,
            "claimed_by": token,
            "lease_expires_at": now + self.lease,
            "last_updated": now,
        }
        candidates = Email.objects.due(now).in_sending_order()
        if ids is not None:
            candidates = candidates.filter(id__in=list(ids))
        with self.recording(None, record or []):
            if _update_returns_rows():
                emails = _claim_returning(candidates if ids is not None else None, limit, claim_values, now)
            elif db_connection.features.has_select_for_update_skip_locked:
                # A short transaction: rows locked by another worker's claim are skipped.
                with transaction.atomic(savepoint=False):
                    claimed = list(candidates.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
                    if claimed:
                        Email.objects.filter(id__in=claimed).update(**claim_values)
                emails = list(Email.objects.filter(status=STATUS.sending, claimed_by=token).in_sending_order())
            else:
                # One UPDATE statement runs under the database's single writer lock,
                # so two workers cannot both take the same row.
                subquery = candidates.values("id")[:limit]
                Email.objects.filter(id__in=subquery, status__in=CLAIMABLE).update(**claim_values)
                emails = list(Email.objects.filter(status=STATUS.sending, claimed_by=token).in_sending_order())
        _load_attachments(emails)
        _load_templates_to_render(emails)
        return token, emails

    def release(self, token: str, emails: Iterable[Email]) -> None:
        """Give back claimed emails that were never attempted."""
        ids = [e.pk for e in emails]
        if ids:
            Email.objects.filter(id__in=ids, claimed_by=token, status=STATUS.sending).update(
                status=STATUS.queued, claimed_by="", lease_expires_at=None, last_updated=timezone.now()
            )

    # -- delivering --------------------------------------------------------

    def _pipeline(self) -> int:
        assert self._executor is not None and self._pool is not None
        executor, pool, throttle = self._executor, self._pool, self.throttle
        # Claim more once fewer than this many emails are waiting or in flight.
        low_water = max(2 * self.threads, self.batch_size // 2)
        # Emails handed to the threads and not reported back yet, by id.
        in_flight: dict[int, tuple[_Job, Email]] = {}
        # Each email's outcome arrives here as soon as its reply does (None: not attempted).
        completed = _Reports()
        # Without limits to watch, the loop wakes only when it has something to do.
        watch_each = self.max_emails is not None or self.max_sent is not None or self.max_failures is not None
        deadlines: dict[str, float] = {}
        buffer: list[Outcome] = []
        last_flush = time.monotonic()
        claimed_total = 0
        queue_empty = False
        skipped_claims = 0
        brake = _Brake(self)
        pace = _Pace(self.threads)
        try:
            while True:
                while not queue_empty and len(in_flight) < low_water and not self._limit_reached(buffer):
                    if self._paused():
                        self.stats.stopped_because = "delivery is paused"
                        queue_empty = True
                        break
                    limit = self._claim_limit(buffer, len(in_flight))
                    if limit <= 0:
                        break  # emails in flight may still fail and leave room for more
                    # Results waiting to be written go in the claim's transaction.
                    token, emails = self.claim(limit, record=buffer)
                    buffer, last_flush = [], time.monotonic()
                    if not emails:
                        if skipped_claims < LOCKED_RETRIES and self._due_but_locked():
                            # Another worker's claim holds them for a moment: look again shortly.
                            skipped_claims += 1
                            time.sleep(LOCKED_RETRY_SECONDS * skipped_claims)
                            continue
                        queue_empty = True
                        break
                    skipped_claims = 0
                    claimed_total += len(emails)
                    deadlines[token] = time.monotonic() + po_settings.BATCH_DELIVERY_TIMEOUT
                    for job in _jobs(token, emails, pace.width()):
                        for email in job.emails:
                            in_flight[email.pk] = (job, email)
                        job.future = executor.submit(_run_job, job, brake, pace, pool, throttle, completed.put)
                if not in_flight:
                    if not any(outcome.error for outcome in buffer) or self._limit_reached(buffer):
                        break
                    # A failure not yet written may be due again at once (a retry): write, then look again.
                    self.record(None, buffer)
                    buffer, last_flush = [], time.monotonic()
                    queue_empty = False
                    continue
                skipped: dict[str, list[Email]] = {}
                wake_at = 1
                if not watch_each:
                    # Wake when the buffer is due to be written or when it is time to claim more.
                    claim_at = len(in_flight) if queue_empty else len(in_flight) - low_water + 1
                    wake_at = max(1, min(FLUSH_EVERY - len(buffer), claim_at))
                for report in completed.take(wake_at, timeout=FLUSH_SECONDS):
                    _collect(report, in_flight, buffer, skipped)
                for token, emails in skipped.items():
                    self.release(token, emails)
                if len(buffer) >= FLUSH_EVERY or (buffer and time.monotonic() - last_flush >= FLUSH_SECONDS):
                    if any(outcome.error for outcome in buffer):
                        queue_empty = False  # a requeued email may be due again at once: look again
                    self.record(None, buffer)
                    buffer, last_flush = [], time.monotonic()
                overdue = {t for t, deadline in deadlines.items() if deadline <= time.monotonic()}
                if overdue & {job.token for job, _email in in_flight.values()}:
                    logger.error("Batch delivery timed out after %ss", po_settings.BATCH_DELIVERY_TIMEOUT)
                    self._give_back(in_flight, completed, buffer, only=overdue)
                    queue_empty = False  # what was given back is due again: later claims take it
                if self._limit_reached(buffer):
                    self._give_back(in_flight, completed, buffer)
        except BaseException:
            # A database error (or a signal) mid-pass: emails not started yet must not
            # go out unrecorded; they stay claimed and their lease returns them.
            for job, _email in in_flight.values():
                job.cancelled = True
                if job.future is not None:
                    job.future.cancel()
            raise
        self.record(None, buffer)
        return claimed_total

    def _due_but_locked(self) -> bool:
        """True when a claim found nothing although due emails exist.

        With SKIP LOCKED a claim skips the rows another worker's claim has
        locked at that moment, and MySQL/MariaDB lock every row they examine
        while sorting, not only the ones they return: the queue only looks empty.
        """
        return bool(db_connection.features.has_select_for_update_skip_locked) and Email.objects.due().exists()

    def _claim_limit(self, unrecorded: list[Outcome], in_flight: int) -> int:
        """How many emails the next claim may take without overshooting --max-emails or MAX_BATCH."""
        limit = self.batch_size
        if self.max_emails is not None:
            limit = min(limit, self.max_emails - self.stats.attempted - len(unrecorded) - in_flight)
        if self.max_sent is not None:
            # Every email in flight may still be sent: claim only what could be sent within the limit.
            unrecorded_sent = sum(1 for outcome in unrecorded if outcome.error is None)
            limit = min(limit, self.max_sent - self.stats.sent - unrecorded_sent - in_flight)
        return limit

    def _give_back(
        self,
        in_flight: dict[int, tuple[_Job, Email]],
        completed: _Reports,
        buffer: list[Outcome],
        only: set[str] | None = None,
    ) -> None:
        """Release emails not started yet; wait for the ones being sent and keep their outcomes.

        Threads cannot be interrupted mid-send: a running job finishes its
        current email and reports the rest as not attempted; the leases guard
        the rows meanwhile.
        """
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
            for report in completed.take(1, timeout=FLUSH_SECONDS):
                _collect(report, in_flight, buffer, unstarted)
        for token, emails in unstarted.items():
            self.release(token, emails)

    def record(self, token: str | None, outcomes: list[Outcome]) -> None:
        """Write sent / requeued / failed statuses and Log rows for a chunk of attempts.

        At most four queries for any number of emails: one UPDATE per outcome
        (the per-email retry times go in one CASE expression) and one Log insert.
        """
        with self.recording(token, outcomes):
            pass

    @contextmanager
    def recording(self, token: str | None, outcomes: list[Outcome]) -> Iterator[None]:
        """Write a chunk of results in a transaction, run the body in the same transaction, then signal.

        The pipeline claims its next batch in the body, so writing results and
        claiming cost one commit together.
        """
        if not outcomes:
            yield
            return
        now = timezone.now()
        sent: list[Email] = []
        failed: list[tuple[Email, BaseException]] = []
        requeued: list[tuple[Email, BaseException]] = []
        logs = []
        for outcome in outcomes:
            email, error = outcome.email, outcome.error
            if error is None:
                sent.append(email)
                email.status = STATUS.sent
                continue
            decision = decide(email, error, now)
            if decision.retry:
                requeued.append((email, error))
                email.status = STATUS.requeued
                email.number_of_retries += 1
                email.scheduled_time = decision.next_attempt
            else:
                failed.append((email, error))
                email.status = STATUS.failed
            if self.log_level >= 1:
                logs.append((email.pk, STATUS.failed, type(error).__name__, _describe(error)[:10000]))
            logger.warning(
                "Delivery of email %s failed (%s, %s): %s",
                email.pk,
                decision.kind.value,
                "will retry" if decision.retry else "not retried",
                _describe(error),
                extra={
                    "email_id": email.pk,
                    "error_kind": decision.kind.value,
                    "will_retry": decision.retry,
                    "attempt": email.number_of_retries + (0 if decision.retry else 1),
                },
            )
        tokens = {outcome.email.pk: outcome.token or token for outcome in outcomes}
        released = {"claimed_by": "", "lease_expires_at": None, "last_updated": now}
        with transaction.atomic():
            if sent:
                _record_sent(sent, tokens, now, log=self.log_level >= 2)
            if failed:
                _still_claimed([e for e, _ in failed], tokens).update(status=STATUS.failed, **released)
            if requeued:
                _still_claimed([e for e, _ in requeued], tokens).update(
                    status=STATUS.requeued,
                    number_of_retries=F("number_of_retries") + 1,
                    scheduled_time=Case(*(When(id=e.pk, then=Value(e.scheduled_time)) for e, _ in requeued)),
                    **released,
                )
            if logs:
                _insert_logs(logs, now)
            yield
        self.stats.sent += len(sent)
        self.stats.failed += len(failed)
        self.stats.requeued += len(requeued)
        _send_signals(sent, failed, requeued)
        if self.on_progress is not None:
            self.on_progress(self.stats)


class _Brake:
    """Keeps delivery threads from starting more emails once the run must stop.

    The main loop learns of results only when it wakes up, and an unreachable
    server fails each attempt in microseconds: without this, a whole claimed
    batch would be attempted before MAX_DEFERRED, --max-seconds or a stop
    request is noticed.
    """

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._lock = threading.Lock()
        limit = worker.max_failures
        self._failures_left = None if limit is None else limit - worker.stats.failed - worker.stats.requeued

    def engaged(self) -> bool:
        worker = self._worker
        if worker.stopping or (self._failures_left is not None and self._failures_left <= 0):
            return True
        return worker.max_seconds is not None and worker.stats.elapsed >= worker.max_seconds

    def note(self, outcome: Outcome) -> None:
        if outcome.error is not None and self._failures_left is not None:
            with self._lock:
                self._failures_left -= 1


@dataclass(eq=False)
class _Job:
    """Emails of one claim for one backend alias, sent one after another by one delivery thread."""

    token: str
    alias: str
    emails: list[Email]
    #: Set by the main loop: start none of the remaining emails.
    cancelled: bool = False
    future: Future[None] | None = None


#: What a delivery thread reports for each email: its job, the email, the outcome (None: not attempted).
_Report = tuple[_Job, Email, "Outcome | None"]


class _Pace:
    """Between how many threads a claimed batch is shared.

    Against a server that answers in a fraction of the time the worker needs
    to prepare and record an email, more threads only wait for each other
    (Python runs one at a time) and cost the process CPU; against a slow one
    every connection helps. Threads sending back to back note for each reply
    whether it had yet to arrive when they came to read it. When most had, the
    server is what they wait for: twice as many jobs per batch, up to the
    worker's threads. When fewer had, the threads wait for each other: half as
    many, down to two. A pass starts with every thread, as a slow server needs.
    """

    #: Replies to hear about before changing the width.
    SAMPLE = 50
    #: Above this share of replies waited for, widen; below LOW, narrow.
    HIGH, LOW = 0.9, 0.8

    def __init__(self, threads: int) -> None:
        self.threads = self._width = threads
        self._lock = threading.Lock()
        self._read = self._waited = 0

    def note(self, read: int, waited: int) -> None:
        with self._lock:
            self._read += read
            self._waited += waited

    def width(self) -> int:
        """How many jobs the next batch is split into (the main loop asks once per claim)."""
        with self._lock:
            if self._read >= self.SAMPLE:
                share = self._waited / self._read
                if share > self.HIGH:
                    self._width = min(self.threads, self._width * 2)
                elif share < self.LOW:
                    # Two at least: one connection's wait for the server overlaps the other's work.
                    self._width = max(min(2, self.threads), self._width // 2)
                self._read = self._waited = 0
            return self._width


def _jobs(token: str, emails: list[Email], threads: int) -> list[_Job]:
    """Split a claimed batch into one job per thread and alias.

    The emails come in sending order; dealing them out in turn keeps the most
    urgent ones at the head of every job.
    """
    by_alias: dict[str, list[Email]] = {}
    for email in emails:
        by_alias.setdefault(email.backend_alias or "default", []).append(email)
    jobs = []
    for alias, group in by_alias.items():
        count = min(threads, len(group))
        jobs += [_Job(token, alias, group[index::count]) for index in range(count)]
    return jobs


def _run_job(
    job: _Job, brake: _Brake, pace: _Pace, pool: ConnectionPool, throttle: float, report: Callable[[_Report], None]
) -> None:
    """Send a job's emails in order and report each one; after a stop the rest are reported not attempted."""
    pending = deque(job.emails)

    def stop() -> bool:
        return job.cancelled or brake.engaged()

    def done(email: Email, error: BaseException | None) -> None:
        outcome = Outcome(email, error)
        brake.note(outcome)
        report((job, email, outcome))

    try:
        chained = not throttle and _sends_wires(pool, job.alias)
        while pending and not stop():
            email = _send_chained(pending, stop, done, pace, pool, job.alias) if chained else pending.popleft()
            if email is not None:
                # After the chain, an email it handed back is known not to serialise: no second try.
                outcome = send_one(email, pool, throttle, try_wire=not chained)
                done(email, outcome.error)
    finally:
        # Also after an unexpected error: every email of the job is reported once.
        for email in pending:
            report((job, email, None))


def _sends_wires(pool: ConnectionPool, alias: str) -> bool:
    """Whether the alias's emails can go back to back as bytes (no rate limit: each send waits for its slot)."""
    if po_settings.RATE_LIMITS.get(alias):
        return False
    try:
        return pool.accepts_wire(alias)
    except Exception:  # noqa: BLE001 - a misconfigured alias: send_one reports the error for each email
        return False


def _send_chained(
    pending: deque[Email],
    stop: Callable[[], bool],
    done: Callable[[Email, BaseException | None], None],
    pace: _Pace,
    pool: ConnectionPool,
    alias: str,
) -> Email | None:
    """Send emails from the head of ``pending`` back to back on one connection (``EmailBackend.send_wires``).

    Stops at an email that must be built as a Django message (attachments,
    other alternatives, rendering at delivery...) and returns it for the
    general path. Emails taken but not sent when the connection broke go back
    to the head of ``pending`` for the next connection.
    """
    general: list[Email] = []

    def items() -> Iterator[tuple[Email, Wire]]:
        while pending and not stop():
            email = pending[0]
            try:
                wire = serialize(email)
            except Exception as error:  # noqa: BLE001 - recorded like any failure
                done(pending.popleft(), error)
                continue
            if wire is None:
                general.append(pending.popleft())
                return
            yield pending.popleft(), wire

    try:
        with pool.connection(alias) as connection:
            read, waited = connection.replies_read, connection.replies_waited  # type: ignore[attr-defined]
            try:
                connection.send_wires(items(), done)  # type: ignore[attr-defined]
            finally:
                pace.note(connection.replies_read - read, connection.replies_waited - waited)  # type: ignore[attr-defined]
    except ConnectionBroken as broken:
        pending.extendleft(reversed(broken.unsent))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - the connection could not be opened: no email was taken
        done(pending.popleft(), error)
    return general[0] if general else None


class _Reports:
    """Where delivery threads report each email's outcome, and the main loop takes them.

    Threads add a report as each reply comes; the main loop sleeps until as
    many reports as it can act on have arrived, instead of waking for each email.
    """

    def __init__(self) -> None:
        self._items: list[_Report] = []
        self._wanted = 1
        self._condition = threading.Condition(threading.Lock())

    def put(self, report: _Report) -> None:
        with self._condition:
            self._items.append(report)
            if len(self._items) >= self._wanted:
                self._condition.notify()

    def take(self, wanted: int, timeout: float | None) -> list[_Report]:
        """Every report so far, once ``wanted`` have arrived or ``timeout`` has passed."""
        with self._condition:
            if len(self._items) < wanted:
                self._wanted = wanted
                self._condition.wait_for(lambda: len(self._items) >= wanted, timeout)
                self._wanted = 1
            items, self._items = self._items, []
        return items


def _collect(
    report: _Report,
    in_flight: dict[int, tuple[_Job, Email]],
    buffer: list[Outcome],
    skipped: dict[str, list[Email]],
) -> None:
    """Keep a reported outcome, or note the email as never attempted (to be released)."""
    job, email, outcome = report
    entry = in_flight.get(email.pk)
    if entry is None or entry[0] is not job:
        return  # already handled by _give_back
    del in_flight[email.pk]
    if outcome is None:
        skipped.setdefault(job.token, []).append(email)
    else:
        buffer.append(_with_token(outcome, job.token))


def _ids_by_token(emails: list[Email], tokens: dict[int, str | None]) -> dict[str | None, list[int]]:
    """The emails' ids grouped by the claim token each was sent under."""
    by_token: dict[str | None, list[int]] = {}
    for email in emails:
        by_token.setdefault(tokens[email.pk], []).append(email.pk)
    return by_token


def _still_claimed(emails: list[Email], tokens: dict[int, str | None]) -> QuerySet[Email]:
    """These emails, where each is still held under the claim it was sent with.

    A worker whose lease ran out (and whose email another worker took over)
    matches nothing here, so it cannot overwrite the newer result.
    """
    condition = Q()
    for token, ids in _ids_by_token(emails, tokens).items():
        condition |= Q(id__in=ids, claimed_by=token, status=STATUS.sending) if token else Q(id__in=ids)
    return Email.objects.filter(condition)


def _send_signals(
    sent: list[Email], failed: list[tuple[Email, BaseException]], requeued: list[tuple[Email, BaseException]]
) -> None:
    if sent and email_sent.has_listeners(Email):
        for email in sent:
            _notify(email_sent, email=email)
    if (failed or requeued) and email_failed.has_listeners(Email):
        for email, error in failed:
            _notify(email_failed, email=email, exception=error, will_retry=False)
        for email, error in requeued:
            _notify(email_failed, email=email, exception=error, will_retry=True)


def _notify(signal: Any, **kwargs: Any) -> None:
    # The results are already written: a failing receiver is logged and must not stop delivery.
    for receiver, result in signal.send_robust(sender=Email, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Signal receiver %r failed for email %s: %s", receiver, kwargs["email"].pk, result, exc_info=result
            )


def _update_returns_rows() -> bool:
    """Whether one UPDATE ... RETURNING statement can claim a batch (PostgreSQL, SQLite 3.35+; not MariaDB)."""
    vendor = db_connection.vendor
    if vendor == "postgresql":
        return True
    return vendor == "sqlite" and db_connection.Database.sqlite_version_info >= (3, 35)  # type: ignore[attr-defined]


def _column(model: type[Model], name: str) -> str:
    """The quoted column of a model field."""
    field: Any = model._meta.get_field(name)
    return str(db_connection.ops.quote_name(field.column))


def _claim_returning(
    candidates: QuerySet[Email] | None, limit: int, values: dict[str, Any], now: datetime
) -> list[Email]:
    """Claim and fetch a batch in one statement, in sending order.

    ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``
    runs as one statement in autocommit: the rows it selects are locked until
    it ends, so concurrent workers skip them, and the claimed rows come back
    without a second query. Each row also says whether the email has
    attachments, so the attachment query runs only when one does.
    """
    statement = _ClaimStatement.get(candidates, limit, now)
    params = [
        Email._meta.get_field(name).get_db_prep_save(values[name], db_connection)  # type: ignore[union-attr]
        for name in _ClaimStatement.ASSIGNED
    ]
    with db_connection.cursor() as cursor:
        cursor.execute(statement.sql, [*params, *statement.params(now)])
        rows = cursor.fetchall()
    emails = _RowLoader.get().emails(rows, values)
    return _in_sending_order(emails)


class _ClaimStatement:
    """The claim's UPDATE ... RETURNING text, compiled once per batch size and sending order.

    Compiling the due() queryset costs the main thread most of a millisecond
    per batch; the text only changes with the limit, the sending order and
    the database. The current time, the only parameter that changes, is found
    by compiling with a marker time in its place.
    """

    _cache: dict[tuple[Any, ...], _ClaimStatement] = {}

    def __init__(self, sql: str, params: list[Any], now_positions: list[int]) -> None:
        self.sql, self._params, self._now_positions = sql, params, now_positions

    def params(self, now: datetime) -> list[Any]:
        params = list(self._params)
        if self._now_positions:
            adapted = _adapt_datetime(now)
            for position in self._now_positions:
                params[position] = adapted
        return params

    @classmethod
    def get(cls, candidates: QuerySet[Email] | None, limit: int, now: datetime) -> _ClaimStatement:
        """The statement for the due emails (``candidates`` None), or for a narrower queryset (compiled each time)."""
        if candidates is not None:
            return cls._compile(candidates, limit, None)
        key = (db_connection.alias, db_connection.vendor, limit, tuple(po_settings.SENDING_ORDER))
        statement = cls._cache.get(key)
        if statement is None:
            marker = now.replace(year=1901, microsecond=123457)
            statement = cls._cache[key] = cls._compile(Email.objects.due(marker).in_sending_order(), limit, marker)
        return statement

    @classmethod
    def _compile(cls, candidates: QuerySet[Email], limit: int, marker: datetime | None) -> _ClaimStatement:
        subquery = candidates.values("id")[:limit]
        if db_connection.features.has_select_for_update_skip_locked:
            # Django compiles FOR UPDATE only inside a transaction; nothing is executed here.
            with transaction.atomic(savepoint=False):
                sub_sql, sub_params = subquery.select_for_update(skip_locked=True).query.sql_with_params()
        else:
            sub_sql, sub_params = subquery.query.sql_with_params()
        quote = db_connection.ops.quote_name
        table, pk = quote(Email._meta.db_table), _column(Email, "id")
        link = Attachment.emails.through
        assignments = ", ".join(f"{_column(Email, name)} = %s" for name in _ClaimStatement.ASSIGNED)
        returning = ", ".join(quote(column) for column in _RowLoader.get().columns)
        claimable = ", ".join(str(int(value)) for value in CLAIMABLE)
        # Only quoted names from the models and Django's compiled subquery go into the text; values are parameters.
        has_attachments = (
            f"EXISTS (SELECT 1 FROM {quote(link._meta.db_table)} WHERE {_column(link, 'email')} = {table}.{pk})"  # noqa: S608
        )
        sql = (
            f"UPDATE {table} SET {assignments} WHERE {pk} IN ({sub_sql}) AND {_column(Email, 'status')} IN ({claimable}) "  # noqa: S608
            f"RETURNING {returning}, {has_attachments} AS has_attachments"
        )
        positions = []
        if marker is not None:
            adapted = _adapt_datetime(marker)
            positions = [index for index, param in enumerate(sub_params) if param == adapted]
        return cls(sql, list(sub_params), positions)

    #: The columns the claim sets, in the order of its parameters.
    ASSIGNED = ("status", "claimed_by", "lease_expires_at", "last_updated")


def _adapt_datetime(value: datetime) -> Any:
    """A datetime as the database driver takes it in a query (what a lookup on a DateTimeField passes)."""
    return Email._meta.get_field("scheduled_time").get_db_prep_value(value, db_connection, prepared=False)  # type: ignore[union-attr]


class _RowLoader:
    """Turns the rows a claim returns into Email instances, with the fields' own converters.

    What ``Email.objects.raw()`` does, without resolving the columns and
    building converters again for every batch. The columns the claim sets are
    not read back (their values are known), nor ``created`` (left deferred).
    Empty JSON lists and objects, most of an email's JSON columns, skip the
    JSON parser.
    """

    _cache: dict[tuple[str, str], _RowLoader] = {}

    def __init__(self) -> None:
        fields = [field for field in Email._meta.concrete_fields if field.name != "created"]
        returned = [field for field in fields if field.name not in _ClaimStatement.ASSIGNED]
        self.columns = [str(field.column) for field in returned]
        #: For each returned column: its converters (the fields' own, as a queryset applies them).
        self.converters: list[tuple[int, list[Callable[..., Any]], Any]] = []
        for index, column in enumerate(returned):
            expression = column.get_col(Email._meta.db_table)
            converters = db_connection.ops.get_db_converters(expression) + expression.get_db_converters(db_connection)
            if isinstance(column, JSONField) and column.decoder is None:
                converters = [_json_value if c == column.from_db_value else c for c in converters]
            if converters:
                self.converters.append((index, converters, expression))
        #: Where each returned column goes among the loaded fields (in model order), and where each claim value goes.
        self.names = {field.attname for field in fields}
        slot = {column.name: position for position, column in enumerate(fields)}
        self.placement = [(slot[column.name], index) for index, column in enumerate(returned)]
        self.claim_slots = [(slot[name], name) for name in _ClaimStatement.ASSIGNED]
        self.width = len(fields)

    @classmethod
    def get(cls) -> _RowLoader:
        key = (db_connection.alias, db_connection.vendor)
        loader = cls._cache.get(key)
        if loader is None:
            loader = cls._cache[key] = cls()
        return loader

    def emails(self, rows: list[tuple[Any, ...]], values: dict[str, Any]) -> list[Email]:
        """Instances for the returned rows (each ending in the has_attachments flag); ``values``: what the claim set."""
        alias, converters, placement, names = db_connection.alias, self.converters, self.placement, self.names
        template: list[Any] = [None] * self.width
        for slot, name in self.claim_slots:
            template[slot] = values[name]
        emails = []
        for row in rows:
            data = list(row)
            for index, functions, expression in converters:
                value = data[index]
                for function in functions:
                    value = function(value, expression, db_connection)
                data[index] = value
            loaded = template.copy()
            for slot, index in placement:
                loaded[slot] = data[index]
            email = Email.from_db(alias, names, loaded)
            email.has_attachments = bool(row[-1])  # type: ignore[attr-defined]
            emails.append(email)
        return emails


def _json_value(value: Any, expression: Any, connection: Any) -> Any:
    """``JSONField.from_db_value`` for a field without a custom decoder, with empty lists and objects made directly."""
    if value == "[]":
        return []
    if value == "{}":
        return {}
    return expression.target.from_db_value(value, expression, connection)


def _in_sending_order(emails: list[Email]) -> list[Email]:
    """Sort as ``in_sending_order()`` does (rows a statement returns come in no particular order)."""
    emails.sort(key=lambda email: email.pk)
    for spec in reversed(po_settings.SENDING_ORDER):
        name = spec.lstrip("-")
        # None sorts last ascending and first descending, as PostgreSQL orders NULLs.
        emails.sort(
            key=lambda email: (getattr(email, name) is None, getattr(email, name) or 0), reverse=spec.startswith("-")
        )
    return emails


def _load_templates_to_render(emails: list[Email]) -> None:
    """Fetch, in one query, the templates of emails rendered at delivery (render_on_delivery).

    Cheaper than joining the template table for every claimed email: most were
    rendered when they were queued and never need their template again.
    """
    wanted = {email.template_id for email in emails if email.context is not None and email.template_id is not None}
    if not wanted:
        return
    templates = EmailTemplate.objects.in_bulk(wanted)
    for email in emails:
        if email.template_id in wanted and email.context is not None:
            email.template = templates.get(email.template_id)


def _load_attachments(emails: list[Email]) -> None:
    """Give each claimed email its attachments, in the order they were attached.

    One query on the link table (plus one for the attachments, when there are
    any) instead of Django's prefetch, which builds a related manager and a
    queryset for every email even when none has an attachment. Attachment rows
    are shared between emails, so the link table's order is each email's own.
    """
    link = Attachment.emails.through
    # A claim made with UPDATE ... RETURNING says which emails have attachments.
    wanted = [email.pk for email in emails if getattr(email, "has_attachments", True)]
    pairs = (
        list(link.objects.filter(email_id__in=wanted).order_by("id").values_list("email_id", "attachment_id"))
        if wanted
        else []
    )
    rows = Attachment.objects.in_bulk({attachment_id for _email_id, attachment_id in pairs}) if pairs else {}
    per_email: dict[int, list[Attachment]] = {}
    for email_id, attachment_id in pairs:
        per_email.setdefault(email_id, []).append(rows[attachment_id])
    for email in emails:
        email.loaded_attachments = per_email.get(email.pk, [])


def _record_sent(emails: list[Email], tokens: dict[int, str | None], now: datetime, log: bool) -> None:
    """Mark sent emails (where still held under their claim) and write their Log rows.

    The hot path of every chunk: one UPDATE per claim token and one
    ``INSERT ... SELECT`` for the Log rows, with only the ids as parameters.
    """
    quote = db_connection.ops.quote_name
    table, pk = quote(Email._meta.db_table), _column(Email, "id")
    status, claimed_by = _column(Email, "status"), _column(Email, "claimed_by")
    when = _adapt_datetime(now)
    with db_connection.cursor() as cursor:
        for token, ids in _ids_by_token(emails, tokens).items():
            for chunk in _chunks(ids):
                sql = (
                    f"UPDATE {table} SET {status} = %s, {claimed_by} = '', {_column(Email, 'lease_expires_at')} = NULL, "  # noqa: S608
                    f"{_column(Email, 'last_updated')} = %s WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})"
                )
                params: list[Any] = [int(STATUS.sent), when, *chunk]
                if token:
                    sql += f" AND {claimed_by} = %s AND {status} = %s"
                    params += [token, int(STATUS.sending)]
                cursor.execute(sql, params)
        if not log:
            return
        columns = ", ".join(_column(Log, name) for name in ("email", "date", "status", "exception_type", "message"))
        log_date = Log._meta.get_field("date").get_db_prep_save(now, db_connection)  # type: ignore[union-attr]
        for chunk in _chunks([email.pk for email in emails]):
            cursor.execute(
                f"INSERT INTO {quote(Log._meta.db_table)} ({columns}) SELECT {pk}, %s, %s, '', '' "  # noqa: S608
                f"FROM {table} WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})",
                [log_date, int(STATUS.sent), *chunk],
            )


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in slices small enough for any database's limit on query parameters."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _insert_logs(rows: Sequence[tuple[int, int, str, str]], now: datetime) -> None:
    """Insert Log rows (email id, status, exception type, message) with one executemany.

    What ``Log.objects.bulk_create`` does, without building a model instance
    and running the field machinery for each of a hundred rows per chunk.
    """
    columns = ", ".join(_column(Log, name) for name in ("email", "date", "status", "exception_type", "message"))
    date = Log._meta.get_field("date").get_db_prep_save(now, db_connection)  # type: ignore[union-attr]
    sql = f"INSERT INTO {db_connection.ops.quote_name(Log._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s)"  # noqa: S608
    with db_connection.cursor() as cursor:
        cursor.executemany(sql, [(pk, date, int(status), kind, text) for pk, status, kind, text in rows])


def _describe(error: BaseException) -> str:
    """The error's text for a Log row: never raises, and storable in every database."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the chunk from being recorded
        text = f"<unprintable {type(error).__name__}>"
    # PostgreSQL text columns cannot hold NUL characters; one in a backend's
    # error would make the whole chunk's write fail.
    return text.replace("\x00", "\\x00")


def send_one(email: Email, pool: ConnectionPool, throttle: float = 0, try_wire: bool = True) -> Outcome:
    """Build and send one email on a pooled connection; never raises."""
    alias = email.backend_alias or "default"
    try:
        # Common shapes go to an SMTP server as bytes written directly (post_office.wire).
        wire = serialize(email) if try_wire and pool.accepts_wire(alias) else None
        message = email.email_message() if wire is None else None
        wait_for_slot(alias)
        with pool.connection(alias) as connection:
            if message is not None:
                connection.send_messages([message])
            else:
                connection.send_wire(wire)  # type: ignore[attr-defined]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - every failure is recorded, none stalls the batch
        # BaseException too: e.g. asyncio.CancelledError from a backend's async client
        # would otherwise escape the thread and stop the run with its chunk unrecorded.
        return Outcome(email, error)
    finally:
        if throttle:
            time.sleep(throttle)
    return Outcome(email)


def dispatch_one(email: Email, *, log_level: int | None = None, commit: bool = True) -> int:
    """Send one email now, whatever its status (django-post_office's ``Email.dispatch``)."""
    worker = Worker(log_level=log_level)
    pool = ConnectionPool()
    try:
        outcome = send_one(email, pool)
    finally:
        pool.close_all()
    if commit:
        worker.record(None, [outcome])
    elif outcome.error is None:
        email.status = STATUS.sent
    else:
        email.status = STATUS.failed
    return email.status


def run_delivery(**options: Any) -> RunStats:
    """One delivery pass with the given Worker options (commands and tasks call this)."""
    return Worker(**options).run()
