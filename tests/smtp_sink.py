"""A real SMTP server on 127.0.0.1 that keeps every message it receives.

Used by delivery tests and by the demo: mail goes over a real socket through
Django's SMTP backend and is parsed back here.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage as ParsedMessage

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> ParsedMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    def __init__(self, sink: SMTPSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook name
        if address.rpartition("@")[2].lower() in self.sink.refuse_domains:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.sink.lock:
            self.sink.messages.append(
                Received(
                    envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)
                )
            )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPSink:
    """``with SMTPSink() as sink:`` runs a server; ``sink.messages`` is what arrived."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, refuse_domains: tuple[str, ...] = ()) -> None:
        self.host = host
        #: Recipients at these domains are refused for good (550), like a mailbox that does not exist.
        self.refuse_domains = {domain.lower() for domain in refuse_domains}
        self.port = port or free_port()
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    def start(self) -> SMTPSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def backend_options(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "use_tls": False, "use_ssl": False, "timeout": 10}
