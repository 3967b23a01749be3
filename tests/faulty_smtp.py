"""An SMTP server on 127.0.0.1 whose answer to each delivery attempt can be scripted.

Faults are chosen per recipient and per attempt (one RCPT command for that
address is one attempt), because the recipient is the first thing a server
knows about a message:

* ``"421@rcpt"``, ``"451@rcpt"``, ``"550@rcpt"``: reply with that code to RCPT;
  421 ("service closing") then closes the connection, as real servers do;
* ``"421@data"``, ``"451@data"``, ``"550@data"``: accept the recipient, reply
  with that code once the message data has arrived;
* ``"drop@data"``: close the connection after the message data arrived,
  without any reply: the client cannot know whether the message was taken;
* ``"stall@data"`` / ``"stall@rcpt"``: never answer, so the client times out;
* ``"ok"``: accept.

A sender tagged ``from+451-mail@`` (or 421, 550) gets that reply to MAIL FROM.

In a test: ``server.script("a@example.com", "451@rcpt")`` makes the first
attempt for that address fail and later ones succeed (``repeat=True`` makes
the last action permanent). Without a script, a tag in the address itself
applies, which also works for a server in another process:
``user+451-rcpt@example.com`` fails every attempt, ``user+451-rcpt-x2@...``
the first two.

Accepted messages are kept in ``server.messages``; ``server.counts()`` counts
them by a header (the subject by default) for exactly-once checks. Run as a
process (``python -m tests.faulty_smtp --port N --delay-ms 20 --record FILE``)
it appends that header's value as one line per accepted message to FILE,
written before the 250 reply, so a client that saw the reply finds the line.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.smtp_sink import Received, free_port

ACTIONS = frozenset(
    {
        "ok",
        "421@rcpt",
        "451@rcpt",
        "550@rcpt",
        "stall@rcpt",
        "421@data",
        "451@data",
        "550@data",
        "drop@data",
        "stall@data",
    }
)
REPLIES = {
    "421": "421 4.3.2 Service closing transmission channel",
    "451": "451 4.3.0 Temporary failure, try again later",
    "550": "550 5.1.1 Mailbox unavailable",
}
#: ``user+451-rcpt@`` or ``user+drop-data-x2@`` (the first two attempts only).
ADDRESS_TAG = re.compile(r"\+(421|451|550|drop|stall)-(rcpt|data)(?:-x(\d+))?@")
#: A sender ``from+451-mail@`` gets that reply to MAIL FROM, every time.
SENDER_TAG = re.compile(r"\+(421|451|550)-mail@")
#: How long a stalled reply waits before the server drops the connection; the client gives up long before.
STALL_SECONDS = 30


def _key_of(data: bytes, header: str) -> str:
    # Headers only: the body does not matter, and a sink process should stay fast.
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(data)
    return str(headers.get(header, ""))


class _Handler:
    def __init__(self, server: FaultySMTP) -> None:
        self.server = server

    async def handle_EHLO(self, smtp, session, envelope, hostname, responses):  # noqa: N802 - aiosmtpd's hook name
        session.host_name = hostname
        if self.server.pipelining:
            # aiosmtpd reads commands one after another, so pipelined ones work; say so (RFC 2920).
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, smtp, session, envelope, address, mail_options):  # noqa: N802 - aiosmtpd's hook name
        tag = SENDER_TAG.search(address)
        if tag:
            if tag.group(1) == "421":
                _close_after_reply(smtp)
            return REPLIES[tag.group(1)]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook name
        if getattr(session, "closing", False):
            # After a 421 a server acts on nothing more: pipelined commands that were
            # already read (the next message's, sent with this one's content) do not count.
            return REPLIES["421"]
        action = self.server._next_action(address, session)
        stage_action = action.split("@")[0]
        if action.endswith("@rcpt"):
            if stage_action == "stall":
                await _stall(smtp, self.server.stall_seconds)
            if stage_action == "421":
                _close_after_reply(smtp)
            return REPLIES[stage_action]
        limit = self.server.max_recipients
        if limit is not None and len(envelope.rcpt_tos) >= limit:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        # The DATA hook applies the first data-stage fault among the recipients.
        if action.endswith("@data") and not getattr(envelope, "data_fault", None):
            envelope.data_fault = stage_action
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        fault = getattr(envelope, "data_fault", None)
        if fault == "stall":
            await _stall(smtp, self.server.stall_seconds)
        if fault == "drop":
            await _stall(smtp, 0)
        if fault in REPLIES:
            if fault == "421":
                _close_after_reply(smtp)
            return REPLIES[fault]
        if self.server.delay:
            await asyncio.sleep(self.server.delay)
        self.server._accept(envelope)
        return "250 Message accepted for delivery"


async def _stall(smtp: Any, seconds: float) -> None:
    """Say nothing for ``seconds``, then drop the connection without a reply."""
    if seconds:
        await asyncio.sleep(seconds)
    smtp.transport.close()
    # Closing the connection cancels this handler: no reply is ever written.
    await asyncio.Event().wait()


def _close_after_reply(smtp: Any) -> None:
    # aiosmtpd writes the reply as soon as the hook returns, before it yields to
    # the loop again; closing on the next loop turn sends the reply, then closes.
    transport = smtp.transport
    smtp.session.closing = True
    smtp.loop.call_soon(transport.close)


class FaultySMTP:
    """``with FaultySMTP() as server:`` runs a scriptable server in a thread.

    It offers PIPELINING, as real servers do, unless ``pipelining=False``.
    ``delay`` (seconds) is added before each 250 reply to DATA, like a remote
    server. ``timeout`` goes into ``backend_options()``: None leaves the
    backend without a timeout, so POST_OFFICE['SEND_TIMEOUT'] applies. A
    stalled reply ends after ``stall_seconds`` with a dropped connection, so a
    client without a timeout fails (without "timed out") instead of hanging.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        delay: float = 0,
        timeout: float | None = 10,
        key_header: str = "Subject",
        record: str | Path | None = None,
        stall_seconds: float = STALL_SECONDS,
        pipelining: bool = True,
        max_recipients: int | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.delay = delay
        self.timeout = timeout
        self.key_header = key_header
        self.stall_seconds = stall_seconds
        self.pipelining = pipelining
        #: Recipients taken per message; RCPT beyond them gets 452 (too many recipients), as real servers cap it.
        self.max_recipients = max_recipients
        #: With credentials, MAIL before a successful AUTH gets 530, and wrong ones 535.
        self.credentials = credentials
        #: Every AUTH attempt: (login, password) as the client sent them.
        self.logins: list[tuple[str, str]] = []
        self.messages: list[Received] = []
        #: (recipient, action) for every attempt, in order.
        self.attempts: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._scripts: dict[str, tuple[list[str], bool]] = {}
        self._seen: Counter[str] = Counter()
        self._sessions: list[object] = []
        self._record: IO[str] | None = open(record, "a", encoding="utf-8") if record else None  # noqa: SIM115
        auth: dict[str, Any] = {}
        if credentials is not None:
            auth = {"auth_required": True, "auth_require_tls": False, "authenticator": self._authenticate}
        self._controller = Controller(
            _Handler(self), hostname=host, port=self.port, server_hostname="faulty.test", **auth
        )

    # -- scripting ---------------------------------------------------------

    def script(self, recipient: str, *actions: str, repeat: bool = False) -> None:
        """Answer attempts for ``recipient`` with ``actions`` in turn, then accept (or repeat the last)."""
        unknown = set(actions) - ACTIONS
        if unknown:
            raise ValueError(f"unknown fault action(s): {sorted(unknown)}")
        with self.lock:
            self._scripts[recipient.lower()] = (list(actions), repeat)

    def _next_action(self, address: str, session: object) -> str:
        key = address.lower()
        with self.lock:
            attempt = self._seen[key]
            self._seen[key] += 1
            if not any(known is session for known in self._sessions):
                self._sessions.append(session)
            action = self._action_for(key, attempt)
            self.attempts.append((key, action))
        return action

    def _action_for(self, address: str, attempt: int) -> str:
        if address in self._scripts:
            actions, repeat = self._scripts[address]
            if attempt < len(actions):
                return actions[attempt]
            return actions[-1] if repeat and actions else "ok"
        tag = ADDRESS_TAG.search(address)
        if tag:
            code, stage, times = tag.groups()
            if times is None or attempt < int(times):
                return f"{code}@{stage}"
        return "ok"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        login = data.login.decode("utf-8", "replace") if data.login is not None else ""
        password = data.password.decode("utf-8", "replace") if data.password is not None else ""
        with self.lock:
            self.logins.append((login, password))
        return AuthResult(success=(login, password) == self.credentials, handled=False)

    def _accept(self, envelope: Any) -> None:
        data = bytes(envelope.original_content or envelope.content)
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), data)
        with self.lock:
            self.messages.append(received)
            if self._record is not None:
                self._record.write(_key_of(data, self.key_header).replace("\n", " ") + "\n")
                self._record.flush()

    # -- what happened -----------------------------------------------------

    def counts(self, header: str | None = None) -> Counter[str]:
        """Accepted messages per value of ``header`` (default: the server's key header)."""
        with self.lock:
            messages = list(self.messages)
        return Counter(str(m.message.get(header or self.key_header, "")) for m in messages)

    def attempts_for(self, recipient: str) -> list[str]:
        """The actions taken for each attempt to deliver to ``recipient``."""
        with self.lock:
            return [action for address, action in self.attempts if address == recipient.lower()]

    @property
    def connections(self) -> int:
        """How many SMTP sessions reached RCPT."""
        with self.lock:
            return len(self._sessions)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FaultySMTP:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        if self._record is not None:
            self._record.close()
            self._record = None

    def __enter__(self) -> FaultySMTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def backend_options(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "use_tls": False, "use_ssl": False, "timeout": self.timeout}


def wait_for_port(host: str, port: int, timeout: float = 15) -> None:
    """Block until something accepts connections on ``host:port`` (a server process started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0, help="Delay before each 250 reply to DATA.")
    parser.add_argument("--record", help="Append one line per accepted message to this file.")
    parser.add_argument("--key-header", default="Subject", help="Header written to --record (default Subject).")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = FaultySMTP(
        args.host, args.port, delay=args.delay_ms / 1000, key_header=args.key_header, record=args.record
    ).start()
    print(f"listening on {args.host}:{args.port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
