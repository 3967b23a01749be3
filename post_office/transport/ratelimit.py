"""Emails-per-second limits per backend alias, shared by every thread and process of a host.

Each limited alias has a small state file holding the earliest time the next
email may go. A sender takes the file's lock for a moment, books the next slot
(``max(now, booked) + 1/rate``), releases the lock and sleeps until its slot.
This is a lock held for microseconds to share a counter, not a lock file that
decides who may run: any number of workers still run side by side.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import threading
import time

from django.conf import settings

from ..conf import settings as po_settings

_SLOT = struct.Struct("d")
_thread_lock = threading.Lock()


def _state_path(alias: str) -> str:
    # One file per project database and alias, so unrelated projects on a host do not share limits.
    database = str(settings.DATABASES.get("default", {}).get("NAME", ""))
    digest = hashlib.sha256(f"{database}\0{alias}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"post_office-rate-{digest}")


def book_slot(alias: str, rate: float, now: float | None = None) -> float:
    """Reserve the next send time for ``alias`` at ``rate`` per second; return it (wall-clock seconds)."""
    interval = 1.0 / rate
    now = time.time() if now is None else now
    with _thread_lock:
        fd = os.open(_state_path(alias), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, _SLOT.size, 0)
            booked = _SLOT.unpack(raw)[0] if len(raw) == _SLOT.size else 0.0
            # A long idle gap does not bank a burst: the slot never starts in the past.
            slot = max(now, booked)
            os.pwrite(fd, _SLOT.pack(slot + interval), 0)
        finally:
            os.close(fd)  # closing releases the lock
    return slot


def wait_for_slot(alias: str) -> None:
    """Block until ``alias`` may send one more email; no-op for aliases without a limit."""
    rate = po_settings.RATE_LIMITS.get(alias)
    if not rate:
        return
    delay = book_slot(alias, float(rate)) - time.time()
    if delay > 0:
        time.sleep(delay)
