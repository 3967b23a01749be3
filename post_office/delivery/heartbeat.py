"""A long-running worker's sign of life: the ``WorkerHeartbeat`` row the admin shows."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from django.db import DatabaseError, InterfaceError, connections
from django.utils import timezone

from ..models import WorkerHeartbeat

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
