"""A worker's sign of life: the ``WorkerHeartbeat`` row the admin and ``mail_delivery`` show.

``runmailer`` writes one row per process (``Heartbeat``); a one-pass run such
as ``send_queued_mail`` from cron writes one row per host and command
(``RunHeartbeat``) with what its last run did.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, InterfaceError, connections
from django.utils import timezone

from ..conf import settings as po_settings
from ..models import WorkerHeartbeat
from .stats import RunStats

logger = logging.getLogger("post_office")

#: Database errors a heartbeat survives (InterfaceError is not a DatabaseError).
DB_ERRORS = (DatabaseError, InterfaceError)


class Heartbeat:
    """Writes the worker's state and counters when the state changes or ``interval`` seconds passed."""

    def __init__(self, name: str, interval: float, counters: Callable[[], dict[str, int]]) -> None:
        self.name = name
        self.interval = interval
        self.counters = counters
        self.started = timezone.now()
        #: The state last written (None: nothing written yet).
        self.state: str | None = None
        self.next_beat = 0.0

    def beat(self, state: str, force: bool = False) -> None:
        """Write the heartbeat row when the state changed or the interval passed (always with ``force``)."""
        # (A wait may end a hair before the beat is due: that counts as due.)
        if not force and state == self.state and time.monotonic() < self.next_beat - 0.05:
            return
        values = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "last_seen": timezone.now(),
            "state": state,
            **self.counters(),
        }
        # A plain UPDATE first (no read-then-write transaction, which SQLite
        # refuses at once while another process writes); the row exists after the first beat.
        if not WorkerHeartbeat.objects.filter(name=self.name).update(**values):
            WorkerHeartbeat.objects.create(name=self.name, **values)
        self.state = state
        self.next_beat = time.monotonic() + self.interval

    def beat_if_due(self) -> None:
        """During a long pass (after each recorded chunk): keep the row fresh; a database error is only logged."""
        if time.monotonic() >= self.next_beat:
            try:
                self.beat("running")
            except DB_ERRORS as error:
                logger.warning("Could not write the heartbeat: %s", error)

    def announce_stopping(self) -> None:
        """Say 'stopping' from another thread while the main one finishes the emails in flight."""
        try:
            # Never over the final state, should this thread be late.
            WorkerHeartbeat.objects.filter(name=self.name).exclude(state__in=("stopped", "crashed")).update(
                state="stopping", last_seen=timezone.now()
            )
        except DB_ERRORS as error:
            logger.warning("Could not write the heartbeat: %s", error)
        finally:
            connections.close_all()  # this thread's own connections


class RunHeartbeat:
    """The row of a one-pass run (``send_queued_mail`` from cron): one per host and command.

    Named ``<command>@<host>``, so each run replaces the previous one's row:
    'running' while it runs (refreshed after each recorded chunk at most every
    HEARTBEAT_INTERVAL), then 'finished' or 'failed' with what this run did.
    A database error while writing the row is logged; delivery goes on.
    """

    def __init__(self, command: str, interval: float | None = None) -> None:
        self.stats: RunStats | None = None
        name = f"{command}@{socket.gethostname()}"[: WorkerHeartbeat._meta.get_field("name").max_length]
        interval = po_settings.HEARTBEAT_INTERVAL if interval is None else interval
        self.heartbeat = Heartbeat(name, interval, self._counters)

    @property
    def name(self) -> str:
        return self.heartbeat.name

    def _counters(self) -> dict[str, int]:
        stats = self.stats
        if stats is None:
            return {"sent": 0, "failed": 0, "requeued": 0}
        return {"sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued}

    def write(self, state: str) -> None:
        try:
            self.heartbeat.beat(state, force=True)
        except DB_ERRORS as error:
            logger.warning("Could not write the heartbeat: %s", error)

    def progress(self, then: Callable[[RunStats], None] | None = None) -> Callable[[RunStats], None]:
        """An ``on_progress`` callback: keep the row fresh with the run's figures, then call ``then``."""

        def on_progress(stats: RunStats) -> None:
            self.stats = stats
            self.heartbeat.beat_if_due()
            if then is not None:
                then(stats)

        return on_progress

    @contextmanager
    def running(self) -> Iterator[RunHeartbeat]:
        """Write 'running' now and 'finished' (or 'failed', when the body raised) at the end."""
        self.write("running")
        state = "failed"
        try:
            yield self
            state = "finished"
        finally:
            self.write(state)
