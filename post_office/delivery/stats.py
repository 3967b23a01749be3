"""What one delivery attempt came to, and the figures of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..models import Email
from ..transport.failures import PartlyRefused, is_setup_error


class Outcome:
    """What one attempt to send ``email`` came to.

    ``error``: None when the server took the message. A ``PartlyRefused`` given
    as the error means it was taken with some recipients refused: it goes in
    ``refused`` and ``error`` is None.
    """

    __slots__ = ("email", "error", "failed", "held", "refused", "token")

    def __init__(self, email: Email, error: BaseException | None = None, token: str | None = None) -> None:
        self.email = email
        #: The claim under which the attempt was made (None: the token passed to record()).
        self.token = token
        #: Sent, but some recipients were refused (the server took the message).
        self.refused: PartlyRefused | None = None
        if error is None:
            self.error, self.held, self.failed = None, False, False
            return
        if isinstance(error, PartlyRefused):
            self.error, self.refused, self.held, self.failed = None, error, False, False
            return
        self.error = error
        #: The error is about the connection or credentials, not this email: it stays queued, no attempt counted.
        self.held = is_setup_error(error)
        #: The attempt failed through the email's own fault (counted, retried or failed for good).
        self.failed = not self.held

    def __repr__(self) -> str:
        return f"Outcome({self.email.pk}, error={self.error!r}, refused={self.refused!r}, token={self.token!r})"


@dataclass
class RunStats:
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    expired: int = 0
    #: Emails left queued because their connection could not be made (see transport.failures).
    held: int = 0
    #: Delivery aliases the run stopped using, with what went wrong (no secret in it).
    blocked: dict[str, str] = field(default_factory=dict)
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
        if self.held:
            text += f", {self.held} held back"
        if self.blocked:
            text += "; " + "; ".join(f"backend {alias!r} cannot deliver: {why}" for alias, why in self.blocked.items())
        return f"{text}; stopped: {self.stopped_because}" if self.stopped_because else text

    def add(self, other: RunStats) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.requeued += other.requeued
        self.expired += other.expired
        self.held += other.held
        self.blocked.update(other.blocked)
