"""What one delivery attempt came to, and the figures of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import Email


@dataclass
class Outcome:
    email: Email
    error: BaseException | None = None
    #: The claim under which the attempt was made (None: the token passed to record()).
    token: str | None = None


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
