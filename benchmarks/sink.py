"""A fast SMTP sink for the benchmarks, run as its own process.

    python benchmarks/sink.py --port 2525 --delay-ms 20 --count-file /tmp/sink.json

It speaks just enough SMTP for smtplib and Django's SMTP backend (EHLO/HELO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT), on plain asyncio protocols so the sink
itself costs as little CPU as possible: on a 2-core box it shares the CPU with
the worker being measured. With ``--delay-ms`` each message waits that long
(without blocking other connections) before its 250 reply, like a remote server.

``--kind aiosmtpd`` serves the same counts and commands from aiosmtpd, a
complete SMTP server implementation (the one the tests use), which costs
several times more CPU per message: the suite measures against both.

Each message's ``X-Bench-Seq`` header (or its Message-ID) is recorded to spot
duplicates. Counts go to ``--count-file`` as JSON a moment after they change,
and two extra commands serve the benchmark driver: ``XSTAT`` replies
``250 <the same JSON>`` and ``XRESET`` clears every count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import time

_SEQ = re.compile(rb"^(?:X-Bench-Seq|Message-ID):[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_EHLO = b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
_END = b"\r\n.\r\n"


class Stats:
    def __init__(self) -> None:
        self.open = 0
        self.reset()

    def reset(self) -> None:
        # Connections open now (the XRESET one at least) stay counted as open;
        # the XRESET connection itself closes right after.
        self.messages = 0
        self.connections = 0
        self.max_open = max(0, self.open - 1)
        self.seen: set[bytes] = set()
        self.duplicates = 0
        self.first = 0.0
        self.last = 0.0
        self.dirty = True

    def record(self, body: bytes) -> None:
        """Count one accepted message; its X-Bench-Seq header finds duplicates."""
        now = time.time()
        if not self.messages:
            self.first = now
        self.last = now
        self.messages += 1
        self.dirty = True
        header_end = body.find(b"\r\n\r\n")
        match = _SEQ.search(body, 0, header_end if header_end >= 0 else len(body))
        if match:
            key = match.group(1)
            if key in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(key)

    def as_dict(self) -> dict[str, object]:
        span = self.last - self.first
        return {
            "messages": self.messages,
            "unique": len(self.seen),
            "duplicates": self.duplicates,
            "connections": self.connections,
            "max_open_connections": self.max_open,
            "first": self.first,
            "last": self.last,
            # Rate seen by the sink, first to last message: independent of the sender's own clock.
            "rate": (self.messages - 1) / span if self.messages > 1 and span > 0 else 0.0,
        }


class SMTPProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats, delay: float) -> None:
        self.stats = stats
        self.delay = delay
        self.buffer = b""
        self.in_data = False
        self.waiting = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.stats.open += 1
        self.stats.max_open = max(self.stats.max_open, self.stats.open)
        self.stats.dirty = True
        transport.write(b"220 bench-sink ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.waiting:
            self.process()

    def write(self, reply: bytes) -> None:
        if self.transport is not None:
            self.transport.write(reply)

    def process(self) -> None:
        while self.buffer and not self.waiting and self.transport is not None:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end, body = 3, b""
                else:
                    index = self.buffer.find(_END)
                    if index < 0:
                        return
                    end, body = index + len(_END), self.buffer[: index + 2]
                self.buffer = self.buffer[end:]
                self.in_data = False
                self.stats.record(body)
                if self.delay:
                    # Answer later without blocking other connections; hold this
                    # connection's further input until the reply has gone.
                    self.waiting = True
                    asyncio.get_running_loop().call_later(self.delay, self.delayed_reply)
                else:
                    self.write(b"250 OK queued\r\n")
                continue
            index = self.buffer.find(b"\r\n")
            if index < 0:
                return
            line, self.buffer = self.buffer[:index], self.buffer[index + 2 :]
            self.command(line)

    def delayed_reply(self) -> None:
        self.waiting = False
        self.write(b"250 OK queued\r\n")
        self.process()

    def command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.write(b"250 OK\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"EHLO":
            self.write(_EHLO)
        elif verb == b"HELO":
            self.write(b"250 bench-sink\r\n")
        elif verb == b"QUIT":
            self.write(b"221 Bye\r\n")
            if self.transport is not None:
                self.transport.close()
        elif verb == b"XSTA":
            self.write(b"250 " + json.dumps(self.stats.as_dict()).encode() + b"\r\n")
        elif verb == b"XRES":
            self.stats.reset()
            self.write(b"250 reset\r\n")
        else:
            self.write(b"502 Command not implemented\r\n")


def aiosmtpd_factory(stats: Stats, delay: float):  # type: ignore[no-untyped-def]
    """A real SMTP server implementation (aiosmtpd, as the tests use) with the same counting and commands."""
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
            session.host_name = hostname
            # aiosmtpd handles pipelined commands; say so, as real servers do (RFC 2920).
            responses.insert(len(responses) - 1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            if delay:
                await asyncio.sleep(delay)
            stats.record(envelope.original_content or envelope.content)
            return "250 OK queued"

    class BenchSMTP(SMTP):
        async def smtp_XSTAT(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command hook name
            await self.push("250 " + json.dumps(stats.as_dict()))

        async def smtp_XRESET(self, arg: str) -> None:  # noqa: N802
            stats.reset()
            await self.push("250 reset")

        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            stats.connections += 1
            stats.open += 1
            stats.max_open = max(stats.max_open, stats.open)
            stats.dirty = True

        def connection_lost(self, exc):  # type: ignore[no-untyped-def]
            stats.open -= 1
            super().connection_lost(exc)

    handler = Handler()
    return lambda: BenchSMTP(handler, hostname="bench-sink", decode_data=False)


def write_counts(stats: Stats, path: str) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(stats.as_dict(), handle)
    os.replace(temporary, path)


async def serve(port: int, delay_ms: float, count_file: str | None, host: str, kind: str = "minimal") -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    factory = (
        aiosmtpd_factory(stats, delay_ms / 1000)
        if kind == "aiosmtpd"
        else (lambda: SMTPProtocol(stats, delay_ms / 1000))
    )
    server = await loop.create_server(factory, host, port, backlog=512)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{kind} sink listening on {host}:{port} delay={delay_ms}ms", flush=True)
    async with server:
        while not stop.is_set():
            if count_file and stats.dirty:
                stats.dirty = False
                write_counts(stats, count_file)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
    if count_file:
        write_counts(stats, count_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=0, help="wait this long before answering each message")
    parser.add_argument("--count-file", help="keep the counts here as JSON")
    parser.add_argument(
        "--kind",
        choices=("minimal", "aiosmtpd"),
        default="minimal",
        help="minimal: the fast protocol above; aiosmtpd: a full SMTP server implementation",
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay_ms, args.count_file, args.host, args.kind))


if __name__ == "__main__":
    main()
