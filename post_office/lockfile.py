"""django-post_office's ``FileLock``, for projects that use it for their own jobs.

Delivery here needs no lock file: emails are claimed in the database, so
overlapping runs on any number of hosts send each email once, and
``send_queued_mail --lockfile`` is accepted and ignored. This lock is kept
because projects imported it to keep their own cron jobs from overlapping. It
is a real lock: the operating system's lock on the file (``flock`` on POSIX,
``msvcrt.locking`` on Windows), released when the holder exits or dies, so it
never goes stale and two processes cannot both take it, as they could with
django-post_office's pid file and symlink.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import IO, Any

from .conf import settings as po_settings

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["FileLock", "FileLocked"]  # and default_lockfile, read when asked for (below)

#: How often a lock with a timeout tries again (seconds).
POLL_INTERVAL = 0.1


class FileLocked(Exception):
    """The lock is held by another process (and no timeout was given, or it ran out)."""


class FileLock:
    """``with FileLock("/tmp/my_job"):`` holds ``/tmp/my_job.lock`` or raises :class:`FileLocked`.

    ``timeout`` (seconds) waits for the holder to let go; ``force`` goes ahead
    without the lock when it is held, as django-post_office's did.
    """

    def __init__(self, lock_filename: str, timeout: float | None = None, force: bool = False) -> None:
        self.lock_filename = f"{lock_filename}.lock"
        self.timeout = timeout
        self.force = force
        self._pid = str(os.getpid())
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`FileLocked`."""
        if self._handle is not None:
            return
        handle = open(self.lock_filename, "a+")  # noqa: SIM115 - held open for as long as the lock is
        try:
            _lock(handle)
        except OSError:
            handle.close()
            raise FileLocked(f"{self.lock_filename} is locked by process {self.get_lock_pid()}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(self._pid)
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Let go of the lock (nothing happens when it is not held here)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            _unlock(handle)
            handle.close()

    def get_lock_pid(self) -> int | None:
        """The process id written by the lock's holder, or None when nobody holds it."""
        if not self.valid_lock():
            return None
        try:
            with open(self.lock_filename) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def valid_lock(self) -> bool:
        """True when some process, this one included, holds the lock."""
        if self._handle is not None:
            return True
        try:
            handle = open(self.lock_filename, "a+")  # noqa: SIM115 - closed below
        except OSError:
            return False
        with handle:
            try:
                _lock(handle)
            except OSError:
                return True
            _unlock(handle)
            return False

    def is_locked(self, force: bool = False) -> bool:
        """False when the lock can be taken (now, or within ``timeout``); raise :class:`FileLocked` otherwise.

        With ``force`` (here or in the constructor) a held lock gives False: go ahead anyway.
        """
        deadline = time.monotonic() + (self.timeout or 0)
        while self.valid_lock() and self._handle is None:
            if time.monotonic() >= deadline:
                if force or self.force:
                    return False
                raise FileLocked(f"{self.lock_filename} is locked by process {self.get_lock_pid()}")
            time.sleep(POLL_INTERVAL)
        return False

    def __enter__(self) -> FileLock:
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            try:
                self.acquire()
                return self
            except FileLocked:
                if time.monotonic() < deadline:
                    time.sleep(POLL_INTERVAL)
                elif self.force:
                    return self
                else:
                    raise

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock(handle: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(handle: IO[str]) -> None:
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def __getattr__(name: str) -> Any:
    # Read when asked for, not at import: POST_OFFICE may change (override_settings).
    if name == "default_lockfile":
        return os.path.join(tempfile.gettempdir(), str(po_settings.raw.get("LOCK_FILE_NAME", "post_office")))
    raise AttributeError(f"module 'post_office.lockfile' has no attribute {name!r}")
