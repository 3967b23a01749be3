"""The long-running delivery loop (``manage.py runmailer``, django-mailer's equivalent).

A :class:`Runner` keeps one :class:`~post_office.delivery.Worker` open, so its
threads and SMTP connections live across passes, and calls ``run_pass()`` in a
loop. When a pass finds nothing to do it waits up to ``EMPTY_QUEUE_SLEEP``
seconds, less when a scheduled email (or a retry) falls due sooner. On
PostgreSQL it LISTENs on :data:`post_office.notify.CHANNEL` on a connection of
its own and wakes as soon as a transaction that queued mail commits.

The first SIGTERM or SIGINT stops it gracefully: nothing more is claimed, the
emails being sent finish and are recorded, the claimed emails not yet started
go back to the queue, and the process exits 0. A second signal exits at once
(the leases of the emails in flight then expire and they are sent again).

Database errors (a restarted server, a dropped connection) never end the loop:
the connections are dropped and the loop goes on after a pause that doubles up
to ``DB_RETRY_MAX_SLEEP``. Delivery errors are recorded on each email and
retried by the usual policy. A backend that cannot be reached or refuses the
credentials leaves its emails queued (:mod:`post_office.transport.failures`);
the loop tries it again after a pause that doubles up to ``SETUP_RETRY_MAX_SLEEP``.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.models import Min
from django.utils import timezone

from ..choices import STATUS
from ..conf import settings as po_settings
from ..models import DeliverySwitch, Email
from .heartbeat import DB_ERRORS, Heartbeat
from .listener import Listener
from .processes import fork
from .shutdown import Shutdown
from .stats import RunStats
from .worker import Worker

logger = logging.getLogger("post_office")

#: Longest pause between attempts while the database is unreachable (seconds).
DB_RETRY_MAX_SLEEP = 30.0
#: The longest wait between attempts while a backend's connection or credentials fail.
SETUP_RETRY_MAX_SLEEP = 60.0


@dataclass
class RunnerStats(RunStats):
    """A runner's figures since it started: the delivery counters plus its own."""

    passes: int = 0
    db_errors: int = 0

    def summary(self) -> str:
        return f"{super().summary()}; {self.passes} passes, {self.db_errors} database errors"


class Runner:
    """Deliver mail until stopped, sleeping when the queue is empty.

    Options not listed here go to :class:`~post_office.delivery.worker.Worker`.
    ``max_seconds`` and ``max_passes`` bound the whole run (tests, rolling
    restarts); ``sleep`` overrides ``EMPTY_QUEUE_SLEEP``.
    """

    def __init__(
        self,
        *,
        sleep: float | None = None,
        max_seconds: float | None = None,
        max_passes: int | None = None,
        heartbeat_interval: float | None = None,
        handle_signals: bool = True,
        parent_pid: int | None = None,
        **worker_options: Any,
    ) -> None:
        self.sleep = po_settings.EMPTY_QUEUE_SLEEP if sleep is None else sleep
        self.max_seconds = max_seconds
        self.max_passes = max_passes
        self.handle_signals = handle_signals
        self.parent_pid = parent_pid
        self.worker = Worker(on_progress=lambda stats: self.heartbeat.beat_if_due(), **worker_options)
        interval = po_settings.HEARTBEAT_INTERVAL if heartbeat_interval is None else heartbeat_interval
        self.heartbeat = Heartbeat(self.worker.name, interval, self._counters)
        self.shutdown = Shutdown(self._on_first_signal)
        self.stats = RunnerStats()
        #: Aliases the last pass could not connect through (see transport.failures).
        self._blocked: dict[str, str] = {}
        self.listener: Listener | None = None
        self._announcer: threading.Thread | None = None

    # -- control -----------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully: finish the emails in flight, give back the rest, then return from run()."""
        self.shutdown.request()
        self.worker.stop()

    def _on_first_signal(self, signum: int) -> None:
        self.stop()
        # The main thread is busy finishing the emails in flight: say so from another thread.
        self._announcer = threading.Thread(
            target=self.heartbeat.announce_stopping, name="post_office-stopping", daemon=True
        )
        self._announcer.start()

    def _should_stop(self) -> bool:
        if self.shutdown.requested:
            return True
        if self.max_passes is not None and self.stats.passes >= self.max_passes:
            return True
        if self.max_seconds is not None and self.stats.elapsed >= self.max_seconds:
            return True
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            logger.warning("The parent process is gone; stopping")
            return True
        return False

    # -- the loop ----------------------------------------------------------

    def run(self) -> RunnerStats:
        """Run until stopped; return the figures of the whole run."""
        self.shutdown.open(self.handle_signals)
        if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
            self.listener = Listener()
        logger.info(
            "runmailer %s started (sleep %gs%s)",
            self.worker.name,
            self.sleep,
            ", LISTEN/NOTIFY" if self.listener else "",
            extra={"worker": self.worker.name},
        )
        final_state = "crashed"
        try:
            with self.worker:
                self._loop()
            final_state = "stopped"
        finally:
            self.shutdown.close()
            if self._announcer is not None:
                self._announcer.join(timeout=10)  # so "stopping" never lands after the final state
            try:
                self.heartbeat.beat(final_state, force=True)
            except DB_ERRORS as error:
                logger.warning("Could not write the last heartbeat: %s", error)
            if self.listener is not None:
                self.listener.close()
            logger.info(
                "runmailer %s %s: %s",
                self.worker.name,
                final_state,
                self.stats.summary(),
                extra={"worker": self.worker.name, **self._counters()},
            )
        return self.stats

    def _loop(self) -> None:
        failures = setup_failures = 0
        while not self._should_stop():
            try:
                close_old_connections()
                if self.listener is not None:
                    # Listen before the pass, so mail queued during it wakes the wait below.
                    self.listener.ensure()
                if self.heartbeat.state is None:
                    self.heartbeat.beat("running")
                claimed = self._pass()
                if self._should_stop():
                    break
                if self._blocked:
                    # A connection or its credentials failed (the emails stay queued): try again
                    # after 1, 2, 4... seconds, not in a busy loop, waking for other due mail.
                    setup_failures += 1
                    backoff = min(SETUP_RETRY_MAX_SLEEP, 2.0 ** (setup_failures - 1))
                    self.heartbeat.beat("running")
                    timeout = min(backoff, self._idle_timeout(DeliverySwitch.is_paused()))
                    failures = 0
                    self._wait(timeout)
                    continue
                setup_failures = 0
                if claimed:
                    self.heartbeat.beat("running")
                    failures = 0
                    continue
                paused = DeliverySwitch.is_paused()
                self.heartbeat.beat("paused" if paused else "idle")
                timeout = self._idle_timeout(paused)
                # Hold no idle database connection while waiting (unless CONN_MAX_AGE asks to).
                close_old_connections()
                failures = 0
            except DB_ERRORS as error:
                failures += 1
                self.stats.db_errors += 1
                timeout = min(DB_RETRY_MAX_SLEEP, 2.0 ** (failures - 1))
                logger.warning(
                    "Database error in runmailer (%s: %s); retrying in %.0fs",
                    type(error).__name__,
                    error,
                    timeout,
                    extra={"worker": self.worker.name, "error": str(error), "retry_in": timeout},
                )
                self._reset_after_db_error()
            self._wait(timeout)
        if self.shutdown.requested:
            why = f"signal {signal.Signals(self.shutdown.signal).name}" if self.shutdown.signal else "stop()"
            logger.info("runmailer %s stopping (%s)", self.worker.name, why, extra={"worker": self.worker.name})

    def _pass(self) -> int:
        worker = self.worker
        # Limits such as MAX_BATCH apply per pass, as in django-mailer's send_all().
        worker.stats = RunStats()
        if self.max_seconds is not None:
            worker.max_seconds = max(0.0, self.max_seconds - self.stats.elapsed)
        try:
            claimed = worker.run_pass()
        finally:
            done, worker.stats = worker.stats, RunStats()
            self._blocked = dict(done.blocked)
            self.stats.passes += 1
            self.stats.add(done)
        if done.attempted or done.expired or done.held:
            logger.info(
                "runmailer pass: %s",
                done.summary(),
                extra={
                    "worker": worker.name,
                    "claimed": claimed,
                    "sent": done.sent,
                    "failed": done.failed,
                    "requeued": done.requeued,
                    "expired": done.expired,
                },
            )
        return claimed

    def _idle_timeout(self, paused: bool) -> float:
        timeout = self.sleep
        if not paused:
            due = self._next_due()
            if due is not None:
                # A little late rather than early: an early wake finds nothing due.
                timeout = min(timeout, (due - timezone.now()).total_seconds() + 0.05)
        timeout = min(timeout, self.heartbeat.next_beat - time.monotonic())
        retry = self.listener.seconds_to_retry() if self.listener is not None else None
        if retry is not None:
            # Without LISTEN new mail goes unnoticed: reconnect when allowed, then look at the queue.
            timeout = min(timeout, retry)
        if self.max_seconds is not None:
            timeout = min(timeout, self.max_seconds - self.stats.elapsed)
        return max(0.0, timeout)

    def _next_due(self) -> datetime | None:
        """When the next queued email (a scheduled one or a retry) or a lease falls due."""
        now = timezone.now()
        scheduled = Email.objects.queued().filter(scheduled_time__gt=now).aggregate(t=Min("scheduled_time"))["t"]
        # An expiring lease means a dead worker's mail will be requeued by the next pass.
        lease = Email.objects.filter(status=STATUS.sending, lease_expires_at__gt=now).aggregate(
            t=Min("lease_expires_at")
        )["t"]
        times = [t for t in (scheduled, lease) if t is not None]
        return min(times) if times else None

    def _wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds; wake early on a signal, stop() or a NOTIFY."""
        wake = self.shutdown.wake_r
        if self.shutdown.requested or timeout <= 0 or wake is None:
            return
        watched: list[Any] = [wake]
        listener, listen_fd = self.listener, None
        if listener is not None and listener.fileno() is not None:
            # Notifications that arrived while the connection was busy wake us at
            # once; so does a lost connection, to reconnect before mail is missed.
            if listener.drain() or listener.fileno() is None:
                return
            listen_fd = listener.fileno()
            watched.append(listen_fd)
        ready, _, _ = select.select(watched, [], [], timeout)
        if wake in ready:
            self.shutdown.drain()
        if listener is not None and listen_fd is not None and listen_fd in ready:
            count = listener.drain()
            if count:
                logger.debug("Woken by %d notification(s)", count, extra={"worker": self.worker.name})

    def _reset_after_db_error(self) -> None:
        """Drop every database connection this process holds, and the delivery threads with theirs."""
        for conn in connections.all(initialized_only=True):
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - a dead connection may fail to close; it is dropped anyway
                pass
        if self.listener is not None:
            self.listener.retry_soon()
        # Delivery threads keep their own database connections (rendering, custom
        # backends): new threads get new ones. The failed pass already cancelled
        # the emails it had not started; those whose results could not be recorded
        # stay claimed until their lease expires and are sent again.
        self.worker.__exit__(None, None, None)
        self.worker.__enter__()

    def _counters(self) -> dict[str, int]:
        # During a pass the worker's own figures are not yet added to the run's.
        current = self.worker.stats
        return {
            "sent": self.stats.sent + current.sent,
            "failed": self.stats.failed + current.failed,
            "requeued": self.stats.requeued + current.requeued,
        }


def _run_child(options: dict[str, Any], parent_pid: int) -> tuple[int, ...]:
    # Signals reach the children through the parent only (a terminal's Ctrl-C
    # goes to the whole process group), so each is counted once.
    os.setpgid(0, 0)
    stats = Runner(parent_pid=parent_pid, **options).run()
    return stats.sent, stats.failed, stats.requeued, stats.expired, stats.passes, stats.db_errors


def run_runners(*, processes: int = 1, **options: Any) -> RunnerStats:
    """Run ``processes`` runners (forked when more than one) until stopped; return the combined figures.

    The parent passes SIGTERM and SIGINT on to its children; a second signal
    makes them exit at once.
    """
    if processes <= 1:
        return Runner(**options).run()
    total = RunnerStats()
    children = [(options, os.getpid())] * processes
    for sent, failed, requeued, expired, passes, db_errors in fork(
        _run_child, children, what="runmailer", forward_signals=True
    ):
        total.add(RunStats(sent=sent, failed=failed, requeued=requeued, expired=expired))
        total.passes += passes
        total.db_errors += db_errors
    return total
