"""Delivery threads: a claimed batch dealt out in jobs, each sent back to back on one connection.

Each job is one claim's emails for one backend alias; one thread sends them in
order on a pooled connection and reports each email's outcome as soon as its
reply arrives. Emails that serialise (:mod:`post_office.message.wire`) go as
bytes, back to back, to a backend that takes them (a ``WireBackend``); the rest
are built as Django messages and sent one at a time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import cast

from django.db import close_old_connections

from ..conf import settings as po_settings
from ..message.compose import build_message
from ..message.wire import serialize
from ..models import Email
from ..transport.connections import ConnectionPool
from ..transport.failures import PartlyRefused
from ..transport.ratelimit import wait_for_slot
from ..transport.smtp import ConnectionBroken, Wire, WireBackend, partly_refused
from .claim import BODIES
from .stats import Outcome


class Brake:
    """Keeps delivery threads from starting more emails once the run must stop.

    The main loop learns of results only when it wakes up, and an unreachable
    server fails each attempt in microseconds: without this, a whole claimed
    batch would be attempted before MAX_DEFERRED, --max-seconds or a stop
    request is noticed.
    """

    def __init__(self, stopping: Callable[[], bool], failures_left: int | None) -> None:
        """``stopping``: the run was stopped or is out of time; ``failures_left``: failures allowed before stopping."""
        self._stopping = stopping
        self._failures_left = failures_left
        self._lock = threading.Lock()
        #: Aliases whose connection or credentials failed (transport.failures), with the error: send no more there.
        self.blocked: dict[str, BaseException] = {}

    def engaged(self) -> bool:
        return (self._failures_left is not None and self._failures_left <= 0) or self._stopping()

    def note(self, outcome: Outcome, alias: str) -> None:
        if outcome.held:
            with self._lock:
                self.blocked.setdefault(alias, outcome.error)  # type: ignore[arg-type]
        elif outcome.error is not None and self._failures_left is not None:
            with self._lock:
                self._failures_left -= 1


@dataclass(eq=False)
class Job:
    """Emails of one claim for one backend alias, sent one after another by one delivery thread."""

    token: str
    alias: str
    emails: list[Email]
    #: Set by the main loop: start none of the remaining emails.
    cancelled: bool = False
    future: Future[None] | None = None


#: What a delivery thread reports for each email: its job, the email, the outcome (None: not attempted).
Report = tuple[Job, Email, "Outcome | None"]


class Pace:
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


def deal(token: str, emails: list[Email], threads: int) -> list[Job]:
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
        jobs += [Job(token, alias, group[index::count]) for index in range(count)]
    return jobs


def run_job(
    job: Job, brake: Brake, pace: Pace, pool: ConnectionPool, throttle: float, report: Callable[[Report], None]
) -> None:
    """Send a job's emails in order and report each one; after a stop the rest are reported not attempted."""
    pending = deque(job.emails)

    blocked, alias = brake.blocked, job.alias

    def stop() -> bool:
        return job.cancelled or alias in blocked or brake.engaged()

    def done(email: Email, error: BaseException | None) -> None:
        outcome = Outcome(email, error)
        brake.note(outcome, job.alias)
        report((job, email, outcome))

    try:
        chained = not throttle and _sends_wires(pool, job.alias)
        while pending and not stop():
            email = _send_chained(pending, stop, done, pace, pool, job.alias) if chained else pending.popleft()
            if email is not None:
                # After the chain, an email it handed back is known not to serialise: no second try.
                outcome = send_one(email, pool, throttle, try_wire=not chained)
                done(email, outcome.refused or outcome.error)
    finally:
        # Also after an unexpected error: every email of the job is reported once.
        for email in pending:
            report((job, email, None))
        # Rendering may have opened a database connection in this thread: close it as a
        # request's end would (CONN_MAX_AGE), not leave it open for the thread's life.
        close_old_connections()


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
    pace: Pace,
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
            if email.large_bodies:
                _drop_bodies(email)  # the wire holds the bytes now
            yield pending.popleft(), wire

    try:
        with pool.connection(alias) as connection:
            wires = cast(WireBackend, connection)
            read, waited = wires.replies_read, wires.replies_waited
            try:
                wires.send_wires(items(), done)
            finally:
                pace.note(wires.replies_read - read, wires.replies_waited - waited)
    except ConnectionBroken as broken:
        pending.extendleft(reversed(broken.unsent))
    except BaseException as error:  # noqa: BLE001 - the connection could not be opened: no email was taken
        # SystemExit and KeyboardInterrupt too: in a delivery thread they come from the
        # backend (signals reach only the main thread), and must not end the job unreported.
        done(pending.popleft(), error)
    return general[0] if general else None


class Reports:
    """Where delivery threads report each email's outcome, and the main loop takes them.

    Threads add a report as each reply comes; the main loop sleeps until as
    many reports as it can act on have arrived, instead of waking for each email.
    """

    def __init__(self) -> None:
        self._items: list[Report] = []
        self._wanted = 1
        self._condition = threading.Condition(threading.Lock())

    def put(self, report: Report) -> None:
        with self._condition:
            self._items.append(report)
            if len(self._items) >= self._wanted:
                self._condition.notify()

    def take(self, wanted: int, timeout: float | None) -> list[Report]:
        """Every report so far, once ``wanted`` have arrived or ``timeout`` has passed."""
        with self._condition:
            if len(self._items) < wanted:
                self._wanted = wanted
                self._condition.wait_for(lambda: len(self._items) >= wanted, timeout)
                self._wanted = 1
            items, self._items = self._items, []
        return items


def collect(
    report: Report,
    in_flight: dict[int, tuple[Job, Email]],
    buffer: list[Outcome],
    skipped: dict[str, list[Email]],
) -> None:
    """Keep a reported outcome, or note the email as never attempted (to be released)."""
    job, email, outcome = report
    entry = in_flight.get(email.pk)
    if entry is None or entry[0] is not job:
        return  # already handled by Pipeline.give_back
    del in_flight[email.pk]
    if outcome is None:
        skipped.setdefault(job.token, []).append(email)
    else:
        outcome.token = job.token  # recorded under the claim it was sent with
        buffer.append(outcome)


def send_one(email: Email, pool: ConnectionPool, throttle: float = 0, try_wire: bool = True) -> Outcome:
    """Build and send one email on a pooled connection; never raises."""
    alias = email.backend_alias or "default"
    try:
        # Common shapes go to an SMTP server as bytes written directly (message.wire).
        wire = serialize(email) if try_wire and pool.accepts_wire(alias) else None
        messages = [build_message(email)] if wire is None else []
        wait_for_slot(alias)
        with pool.connection(alias) as connection:
            if wire is None:
                connection.send_messages(messages)
                take_refused = getattr(connection, "take_refused", None)
                refused = take_refused() if take_refused is not None else {}
                if refused:
                    accepted = len(messages[0].recipients()) - len(refused)
                    return Outcome(email, PartlyRefused(refused, accepted))
            else:
                partial = partly_refused(cast(WireBackend, connection).send_wire(wire), wire)
                if partial is not None:
                    return Outcome(email, partial)
    except BaseException as error:  # noqa: BLE001 - every failure is recorded, none stalls the batch
        # BaseException too: asyncio.CancelledError from a backend's async client, or a
        # SystemExit / KeyboardInterrupt a backend raises (signals reach only the main
        # thread), would otherwise end the thread with the email never reported.
        return Outcome(email, error)
    finally:
        if email.large_bodies:
            _drop_bodies(email)
        if throttle:
            time.sleep(throttle)
    return Outcome(email)


def _drop_bodies(email: Email) -> None:
    """Forget large bodies loaded for one send: the email waits to be recorded without them."""
    for name in BODIES:
        email.__dict__.pop(name, None)
