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
retried by the usual policy, so a dead SMTP server does not end it either.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

from django import db
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, close_old_connections, connections
from django.db.models import Min
from django.utils import timezone

from .conf import settings as po_settings
from .delivery import RunStats, Worker
from .models import STATUS, DeliverySwitch, Email, WorkerHeartbeat
from .notify import CHANNEL

logger = logging.getLogger("post_office")

#: Longest pause between attempts while the database is unreachable (seconds).
DB_RETRY_MAX_SLEEP = 30.0
#: Longest pause between attempts to reopen the LISTEN connection (seconds).
LISTEN_RETRY_MAX_SLEEP = 60.0
#: Database errors the loop survives (InterfaceError is not a DatabaseError).
DB_ERRORS = (DatabaseError, InterfaceError)


@dataclass
class RunnerStats(RunStats):
    """A runner's figures since it started: the delivery counters plus its own."""

    passes: int = 0
    db_errors: int = 0

    def summary(self) -> str:
        return f"{super().summary()}; {self.passes} passes, {self.db_errors} database errors"


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


class Runner:
    """Deliver mail until stopped, sleeping when the queue is empty.

    Options not listed here go to :class:`~post_office.delivery.Worker`.
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
        self.heartbeat_interval = po_settings.HEARTBEAT_INTERVAL if heartbeat_interval is None else heartbeat_interval
        self.handle_signals = handle_signals
        self.parent_pid = parent_pid
        self.worker = Worker(on_progress=self._on_progress, **worker_options)
        self.stats = RunnerStats()
        self.started = timezone.now()
        self.listener: Listener | None = None
        self._stop_requested = False
        self._signal: int | None = None
        self._state: str | None = None
        self._next_beat = 0.0
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._announcer: threading.Thread | None = None

    # -- control -----------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully: finish the emails in flight, give back the rest, then return from run()."""
        self._stop_requested = True
        self.worker.stop()
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:  # the buffer is full: a wake-up is already pending
                pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags and a byte on a socket here: the main thread may be in the
        # middle of a query or a log call when the signal arrives.
        if self._stop_requested:
            os.write(2, f"post_office: second signal ({signal.Signals(signum).name}), exiting now\n".encode())
            os._exit(128 + signum)
        self._signal = signum
        self.stop()
        # The main thread is busy finishing the emails in flight: say so from another thread.
        self._announcer = threading.Thread(target=self._announce_stopping, name="post_office-stopping", daemon=True)
        self._announcer.start()

    def _announce_stopping(self) -> None:
        try:
            # Never over the final state, should this thread be late.
            WorkerHeartbeat.objects.filter(name=self.worker.name).exclude(state__in=("stopped", "crashed")).update(
                state="stopping", last_seen=timezone.now()
            )
        except DB_ERRORS as error:
            logger.warning("Could not write the heartbeat: %s", error)
        finally:
            db.connections.close_all()  # this thread's own connections

    def _should_stop(self) -> bool:
        if self._stop_requested:
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
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._install_signal_handlers()
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
            self._restore_signal_handlers()
            if self._announcer is not None:
                self._announcer.join(timeout=10)  # so "stopping" never lands after the final state
            try:
                self._beat(final_state, force=True)
            except DB_ERRORS as error:
                logger.warning("Could not write the last heartbeat: %s", error)
            if self.listener is not None:
                self.listener.close()
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None
            logger.info(
                "runmailer %s %s: %s",
                self.worker.name,
                final_state,
                self.stats.summary(),
                extra={"worker": self.worker.name, **self._counters()},
            )
        return self.stats

    def _loop(self) -> None:
        failures = 0
        while not self._should_stop():
            try:
                close_old_connections()
                if self.listener is not None:
                    # Listen before the pass, so mail queued during it wakes the wait below.
                    self.listener.ensure()
                if self._state is None:
                    self._beat("running")
                claimed = self._pass()
                if self._should_stop():
                    break
                if claimed:
                    self._beat("running")
                    failures = 0
                    continue
                paused = DeliverySwitch.is_paused()
                self._beat("paused" if paused else "idle")
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
        if self._stop_requested:
            why = f"signal {signal.Signals(self._signal).name}" if self._signal else "stop()"
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
            self.stats.passes += 1
            self.stats.add(done)
        if done.attempted or done.expired:
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
        timeout = min(timeout, self._next_beat - time.monotonic())
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
        if self._stop_requested or timeout <= 0:
            return
        assert self._wake_r is not None
        watched: list[Any] = [self._wake_r]
        listener, listen_fd = self.listener, None
        if listener is not None and listener.fileno() is not None:
            # Notifications that arrived while the connection was busy wake us at
            # once; so does a lost connection, to reconnect before mail is missed.
            if listener.drain() or listener.fileno() is None:
                return
            listen_fd = listener.fileno()
            watched.append(listen_fd)
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(64):
                    pass
            except BlockingIOError:
                pass
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

    # -- heartbeat ---------------------------------------------------------

    def _counters(self) -> dict[str, int]:
        # During a pass the worker's own figures are not yet added to the run's.
        current = self.worker.stats
        return {
            "sent": self.stats.sent + current.sent,
            "failed": self.stats.failed + current.failed,
            "requeued": self.stats.requeued + current.requeued,
        }

    def _beat(self, state: str, force: bool = False) -> None:
        """Write the heartbeat row when the state changed or the interval passed."""
        # (A wait may end a hair before the beat is due: that counts as due.)
        if not force and state == self._state and time.monotonic() < self._next_beat - 0.05:
            return
        values = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "last_seen": timezone.now(),
            "state": state,
            **self._counters(),
        }
        # A plain UPDATE first (no read-then-write transaction, which SQLite
        # refuses at once while another process writes); the row exists after the first beat.
        if not WorkerHeartbeat.objects.filter(name=self.worker.name).update(**values):
            WorkerHeartbeat.objects.create(name=self.worker.name, **values)
        self._state = state
        self._next_beat = time.monotonic() + self.heartbeat_interval

    def _on_progress(self, stats: RunStats) -> None:
        # Called after each chunk of results is recorded: keeps the heartbeat fresh during long passes.
        if time.monotonic() >= self._next_beat:
            try:
                self._beat("running")
            except DB_ERRORS as error:
                logger.warning("Could not write the heartbeat: %s", error)

    # -- signals -----------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()


def _child(options: dict[str, Any], results: Any, parent_pid: int) -> None:
    # Signals reach the children through the parent only (a terminal's Ctrl-C
    # goes to the whole process group), so each is counted once.
    os.setpgid(0, 0)
    stats = Runner(parent_pid=parent_pid, **options).run()
    results.put((stats.sent, stats.failed, stats.requeued, stats.expired, stats.passes, stats.db_errors))
    db.connections.close_all()


def run_runners(*, processes: int = 1, **options: Any) -> RunnerStats:
    """Run ``processes`` runners (forked when more than one) until stopped; return the combined figures.

    The parent passes SIGTERM and SIGINT on to its children; a second signal
    makes them exit at once.
    """
    if processes <= 1:
        return Runner(**options).run()
    total = RunnerStats()
    db.connections.close_all()  # forked children must not share the parent's connection
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_child, args=(options, results, os.getpid())) for _ in range(processes)]
    for child in children:
        child.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.is_alive() for child in children) or not results.empty():
            try:
                sent, failed, requeued, expired, passes, db_errors = results.get(timeout=1)
            except queue.Empty:
                continue
            total.sent += sent
            total.failed += failed
            total.requeued += requeued
            total.expired += expired
            total.passes += passes
            total.db_errors += db_errors
        for child in children:
            child.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed_children = [child.exitcode for child in children if child.exitcode]
    if failed_children:
        raise RuntimeError(f"{len(failed_children)} runmailer process(es) exited with an error: {failed_children}")
    return total
