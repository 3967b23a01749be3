"""Delivery: claim a batch in the database, send it outside any transaction, record results promptly.

A claim marks emails ``sending`` with a lease (``claimed_by`` is a token unique to
the claim, ``lease_expires_at`` its end). Results are written in small chunks,
and only where the claim token still matches, so a worker whose lease ran out
never overwrites the result of the worker that took the email over.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Prefetch, QuerySet
from django.utils import timezone

from .conf import settings as po_settings
from .connections import ConnectionPool
from .models import CLAIMABLE, STATUS, Attachment, Email, Log
from .retry import decide

logger = logging.getLogger("post_office")

#: Results are written once this many are waiting, or after FLUSH_SECONDS.
FLUSH_EVERY = 25
FLUSH_SECONDS = 0.25


@dataclass
class Outcome:
    email: Email
    error: BaseException | None = None


@dataclass
class RunStats:
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    expired: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def attempted(self) -> int:
        return self.sent + self.failed + self.requeued

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        rate = self.attempted / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"{self.sent} sent, {self.failed} failed, {self.requeued} requeued, {self.expired} expired "
            f"in {self.elapsed:.2f}s ({rate:.1f} emails/s)"
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Deliver due emails until the queue is empty (or a limit is reached)."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        threads: int | None = None,
        log_level: int | None = None,
        max_emails: int | None = None,
        lease_seconds: float | None = None,
        on_progress: Callable[[RunStats], None] | None = None,
        inline: bool = False,
    ) -> None:
        self.batch_size = batch_size or po_settings.BATCH_SIZE
        self.threads = threads or po_settings.THREADS_PER_PROCESS
        self.log_level = po_settings.LOG_LEVEL if log_level is None else log_level
        self.max_emails = max_emails
        self.lease = timedelta(seconds=lease_seconds or po_settings.LEASE_SECONDS)
        self.on_progress = on_progress
        # An inline ('now') attempt that fails transiently always goes back to the queue.
        self.min_retries = 1 if inline else 0
        self.name = worker_name()
        self.stats = RunStats()

    # -- the run -----------------------------------------------------------

    def run(self) -> RunStats:
        """Deliver every due email once; return what happened."""
        self.stats = RunStats()
        self.requeue_stale_leases()
        self.fail_expired()
        pool = ConnectionPool()
        executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="post_office")
        try:
            while True:
                limit = self.batch_size
                if self.max_emails is not None:
                    limit = min(limit, self.max_emails - self.stats.attempted)
                    if limit <= 0:
                        break
                token, emails = self.claim(limit)
                if not emails:
                    break
                self.deliver(token, emails, pool, executor)
        finally:
            executor.shutdown(wait=True)
            pool.close_all()
        logger.info(
            "post_office run: %s",
            self.stats.summary(),
            extra={"sent": self.stats.sent, "failed": self.stats.failed, "requeued": self.stats.requeued},
        )
        return self.stats

    def deliver_ids(self, ids: Iterable[int]) -> RunStats:
        """Claim these emails (if still queued) and deliver them now, in this thread."""
        ids = list(ids)
        token, emails = self.claim(len(ids), ids=ids)
        pool = ConnectionPool()
        try:
            outcomes = [send_one(email, pool) for email in emails]
            self.record(token, outcomes)
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

    def claim(self, limit: int, ids: Iterable[int] | None = None) -> tuple[str, list[Email]]:
        """Take up to ``limit`` due emails for this worker; return the claim token and them."""
        token = f"{self.name}:{uuid.uuid4().hex[:16]}"
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
        if db_connection.features.has_select_for_update_skip_locked:
            with transaction.atomic():
                claimed = list(candidates.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
                if claimed:
                    Email.objects.filter(id__in=claimed).update(**claim_values)
        else:
            # SQLite: one UPDATE statement runs under the database's single writer
            # lock, so two workers cannot both take the same row.
            subquery = candidates.values("id")[:limit]
            Email.objects.filter(id__in=subquery, status__in=CLAIMABLE).update(**claim_values)
        emails = list(
            Email.objects.filter(status=STATUS.sending, claimed_by=token)
            .select_related("template")
            .prefetch_related(Prefetch("attachments", queryset=_attachments_in_link_order()))
            .in_sending_order()
        )
        return token, emails

    def release(self, token: str, emails: Iterable[Email]) -> None:
        """Give back claimed emails that were never attempted."""
        Email.objects.filter(id__in=[e.pk for e in emails], claimed_by=token, status=STATUS.sending).update(
            status=STATUS.queued, claimed_by="", lease_expires_at=None, last_updated=timezone.now()
        )

    # -- delivering --------------------------------------------------------

    def deliver(self, token: str, emails: list[Email], pool: ConnectionPool, executor: ThreadPoolExecutor) -> None:
        """Send a claimed batch on the thread pool, writing results as they come in."""
        futures: dict[Future[Outcome], Email] = {executor.submit(send_one, email, pool): email for email in emails}
        deadline = time.monotonic() + po_settings.BATCH_DELIVERY_TIMEOUT
        pending = set(futures)
        done_buffer: list[Outcome] = []
        last_flush = time.monotonic()
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=min(remaining, FLUSH_SECONDS), return_when=FIRST_COMPLETED)
            done_buffer.extend(future.result() for future in done)
            if len(done_buffer) >= FLUSH_EVERY or (done_buffer and time.monotonic() - last_flush >= FLUSH_SECONDS):
                self.record(token, done_buffer)
                done_buffer, last_flush = [], time.monotonic()
        if done_buffer:
            self.record(token, done_buffer)
        if pending:
            not_started = [futures[f] for f in pending if f.cancel()]
            self.release(token, not_started)
            running = [f for f in pending if not f.cancelled()]
            logger.error(
                "Batch delivery timed out after %ss: %d emails given back, %d still in flight",
                po_settings.BATCH_DELIVERY_TIMEOUT,
                len(not_started),
                len(running),
            )
            # Threads cannot be killed; record what the in-flight ones did once they finish.
            self.record(token, [f.result() for f in running])

    def record(self, token: str | None, outcomes: list[Outcome]) -> None:
        """Write sent / requeued / failed statuses and Log rows for a chunk of attempts."""
        if not outcomes:
            return
        now = timezone.now()
        sent, failed, requeue = [], [], []
        logs = []
        for outcome in outcomes:
            email = outcome.email
            if outcome.error is None:
                sent.append(email.pk)
                email.status = STATUS.sent
                if self.log_level >= 2:
                    logs.append(Log(email_id=email.pk, status=STATUS.sent))
                continue
            decision = decide(outcome.error, email.number_of_retries, now, min_retries=self.min_retries)
            if decision.retry:
                requeue.append(email.pk)
                email.status = STATUS.requeued
                email.number_of_retries += 1
                email.scheduled_time = decision.next_attempt
            else:
                failed.append(email.pk)
                email.status = STATUS.failed
            if self.log_level >= 1:
                logs.append(
                    Log(
                        email_id=email.pk,
                        status=STATUS.failed,
                        exception_type=type(outcome.error).__name__,
                        message=str(outcome.error)[:10000],
                    )
                )
            logger.warning(
                "Delivery of email %s failed: %s",
                email.pk,
                outcome.error,
                extra={"email_id": email.pk, "retry": decision.retry},
            )
        claim = {"claimed_by": token, "status": STATUS.sending} if token else {}
        released = {"claimed_by": "", "lease_expires_at": None, "last_updated": now}
        with transaction.atomic():
            if sent:
                Email.objects.filter(id__in=sent, **claim).update(status=STATUS.sent, **released)
            if failed:
                Email.objects.filter(id__in=failed, **claim).update(status=STATUS.failed, **released)
            if requeue:
                Email.objects.filter(id__in=requeue, **claim).update(
                    status=STATUS.requeued,
                    number_of_retries=F("number_of_retries") + 1,
                    scheduled_time=now + po_settings.RETRY_INTERVAL,
                    **released,
                )
            if logs:
                Log.objects.bulk_create(logs)
        self.stats.sent += len(sent)
        self.stats.failed += len(failed)
        self.stats.requeued += len(requeue)
        if self.on_progress is not None:
            self.on_progress(self.stats)


def _attachments_in_link_order() -> QuerySet[Attachment]:
    """Attachments in the order each email was given them (the link table's order).

    Attachment rows are shared between emails, so their own ids do not follow
    any one email's order. The prefetch query joins the link table under its
    own name, which is what this ordering refers to.
    """
    link_table = Attachment.emails.through._meta.db_table
    return Attachment.objects.extra(order_by=[f"{link_table}.id"])  # noqa: S610 - fixed table name, no input


def send_one(email: Email, pool: ConnectionPool) -> Outcome:
    """Build and send one email on this thread's connection; never raises."""
    alias = email.backend_alias or "default"
    try:
        message = email.email_message()
        connection = pool.get(alias)
        try:
            connection.send_messages([message])
        except BaseException:
            # The connection may be broken: reopen it for the next email.
            pool.discard(alias)
            raise
    except Exception as error:  # noqa: BLE001 - every failure is recorded, none stalls the batch
        return Outcome(email, error)
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
