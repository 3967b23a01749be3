"""Stopping a long-running worker on SIGTERM or SIGINT: gracefully on the first, at once on the second.

Only flags and a byte on a socket are touched in the handler: the main thread
may be in the middle of a query or a log call when the signal arrives. The
socket also wakes the runner's idle wait.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class Shutdown:
    """A wake-up socket and the signal handlers of one run."""

    def __init__(self, on_first_signal: Callable[[int], None]) -> None:
        self.on_first_signal = on_first_signal
        self.requested = False
        self.signal: int | None = None
        self.wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._previous: dict[int, Any] = {}

    def open(self, handle_signals: bool) -> None:
        """Make the wake-up socket; install the handlers (main thread only) when ``handle_signals``."""
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def close(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        for sock in (self.wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self.wake_r = self._wake_w = None

    def request(self) -> None:
        """Ask the run to stop and wake its wait."""
        self.requested = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:  # the buffer is full: a wake-up is already pending
                pass

    def drain(self) -> None:
        """Empty the wake-up socket after a wait woke on it."""
        assert self.wake_r is not None
        try:
            while self.wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            os.write(2, f"post_office: second signal ({signal.Signals(signum).name}), exiting now\n".encode())
            os._exit(128 + signum)
        self.signal = signum
        self.on_first_signal(signum)
