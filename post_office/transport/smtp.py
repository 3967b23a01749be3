"""Django's SMTP backend, plus a fast way for the delivery worker to send stored emails.

``EmailBackend`` behaves exactly like ``django.core.mail.backends.smtp.EmailBackend``
(same settings, same ``send_messages``); delivery uses it in place of Django's
class when an alias names that class. It adds two methods for bytes made by
:func:`post_office.message.wire.serialize` (the addresses were validated when the email
was queued and the message is already serialised):

- :meth:`EmailBackend.send_wire` sends one message. When the server offers
  PIPELINING (RFC 2920) the MAIL, RCPT and DATA commands go out in one write,
  so a message costs two round trips instead of four.
- :meth:`EmailBackend.send_wires` sends messages back to back on the
  connection: each message's content and end, and the next message's MAIL,
  RCPT and DATA, go out in one write (RFC 2920 allows commands after the end
  of data in the same group), so a message costs one round trip.

Failures are the ``smtplib`` exceptions ``sendmail`` raises, so the retry policy
classifies them the same way. Recipients a server refuses while it takes the
message for others (``452 Too many recipients``) are not dropped: ``send_wire``
returns them, ``send_wires`` reports them as :class:`~post_office.transport.failures.PartlyRefused`,
and after ``send_messages`` :meth:`EmailBackend.take_refused` gives them.
"""

from __future__ import annotations

import re
import select
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from .failures import PartlyRefused

_LEADING_DOT = re.compile(rb"(?m)^\.")
_Key = TypeVar("_Key")

#: Refusals after which the connection is still usable for the next message.
_REFUSALS = (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)


@dataclass(frozen=True, slots=True)
class Wire:
    """What one SMTP transaction needs: the envelope and the message bytes (CRLF line ends)."""

    sender: str
    recipients: list[str]
    data: bytes


class ConnectionBroken(Exception, Generic[_Key]):
    """``send_wires`` lost the connection; ``unsent`` holds what it had taken but not sent (to send on another)."""

    def __init__(self, unsent: list[_Key]) -> None:
        super().__init__("the SMTP connection broke")
        self.unsent = unsent


@runtime_checkable
class WireBackend(Protocol):
    """A connection that sends pre-serialised stored emails (what the delivery threads use when it has them).

    ``replies_read`` and ``replies_waited`` count the replies ``send_wires``
    read and how many of them the thread had to wait for (the delivery pace).
    """

    replies_read: int
    replies_waited: int

    def send_wire(self, wire: Wire) -> dict[str, tuple[int, bytes]]: ...

    def send_wires(
        self, items: Iterator[tuple[_Key, Wire]], done: Callable[[_Key, BaseException | None], None]
    ) -> None: ...


class EmailBackend(DjangoSMTPBackend):
    """Django's SMTP backend that can also send pre-serialised stored emails."""

    #: Replies ``send_wires`` read, and how many of them were not there yet when it
    #: started reading (it had to wait for the server): see ``post_office.delivery.threads``.
    replies_read = 0
    replies_waited = 0

    def _ready(self) -> smtplib.SMTP:
        if self.connection is None:
            self.open()
        connection = self.connection
        assert connection is not None
        connection.ehlo_or_helo_if_needed()
        return connection

    def send_wire(self, wire: Wire) -> dict[str, tuple[int, bytes]]:
        """Send one serialised email on this connection; raise on any failure; return the recipients refused."""
        connection = self._ready()
        if _pipelining(connection):
            return send_pipelined(connection, wire)
        return connection.sendmail(wire.sender, wire.recipients, wire.data)

    def open(self) -> bool | None:
        """Open the connection as Django does; note the recipients a server refuses while it takes the message."""
        opened = super().open()
        connection = self.connection
        if connection is not None and not hasattr(connection, "refused_recipients"):
            # Django's send_messages() drops what sendmail() returns: the recipients refused
            # while others were accepted. Keep them, so delivery can retry or report them.
            connection.refused_recipients = {}  # type: ignore[attr-defined]
            sendmail = connection.sendmail

            def keeping_refusals(*args: Any, **kwargs: Any) -> dict[str, tuple[int, bytes]]:
                refused = sendmail(*args, **kwargs)
                connection.refused_recipients.update(refused or {})  # type: ignore[attr-defined]
                return refused

            connection.sendmail = keeping_refusals  # type: ignore[method-assign]
        return opened

    def take_refused(self) -> dict[str, tuple[int, bytes]]:
        """The recipients refused by the messages sent since the last call (whose other recipients were accepted)."""
        connection = self.connection
        refused = getattr(connection, "refused_recipients", None)
        if not refused:
            return {}
        taken = dict(refused)
        refused.clear()
        return taken

    def send_wires(
        self, items: Iterator[tuple[_Key, Wire]], done: Callable[[_Key, BaseException | None], None]
    ) -> None:
        """Send every ``(key, wire)`` of ``items``, calling ``done(key, error or None)`` as each message's reply comes.

        Items are taken from the iterator one at a time, as the connection is
        ready for them. A refused message is reported and the next one goes on
        the same connection. When the connection breaks, the message it broke
        on is reported with the error and ``ConnectionBroken`` is raised with
        the items taken but never sent. Any other exception means no item was
        taken.
        """
        connection = self._ready()
        if _pipelining(connection):
            send_chain(connection, items, done, self._count_reply)
            return
        for key, wire in items:
            try:
                refused = connection.sendmail(wire.sender, wire.recipients, wire.data)
            except _REFUSALS as error:
                done(key, error)
                if connection.sock is None:
                    raise ConnectionBroken([]) from error
            except BaseException as error:
                done(key, error)
                raise ConnectionBroken([]) from error
            else:
                done(key, partly_refused(refused, wire))

    def _count_reply(self, waited: bool) -> None:
        self.replies_read += 1
        self.replies_waited += waited


def _pipelining(connection: smtplib.SMTP) -> bool:
    return bool(connection.does_esmtp and connection.has_extn("pipelining"))


def send_pipelined(connection: smtplib.SMTP, wire: Wire) -> dict[str, tuple[int, bytes]]:
    """One SMTP transaction with MAIL, RCPT and DATA sent together (the server offers PIPELINING).

    Returns the recipients refused while others were accepted, as ``sendmail`` does.
    """
    connection.send(_commands(connection, wire))
    refused = _command_replies(connection, wire)
    connection.send(_content(wire))
    code, reply = connection.getreply()
    if code != 250:
        _reset(connection, code)
        raise smtplib.SMTPDataError(code, reply)
    return refused


def partly_refused(refused: dict[str, tuple[int, bytes]], wire: Wire) -> PartlyRefused | None:
    """The outcome of a message the server took: None, or the recipients it refused meanwhile."""
    return PartlyRefused(refused, accepted=len(wire.recipients) - len(refused)) if refused else None


def send_chain(
    connection: smtplib.SMTP,
    items: Iterator[tuple[_Key, Wire]],
    done: Callable[[_Key, BaseException | None], None],
    observe: Callable[[bool], None] | None = None,
) -> None:
    """Messages back to back, each one's content sent with the next one's commands (see ``send_wires``).

    ``observe(waited)`` hears, for each message, whether its reply had yet to
    arrive when this thread came to read it.
    """
    item = next(items, None)
    commands_sent = False
    while item is not None:
        key, wire = item
        try:
            if not commands_sent:
                connection.send(_commands(connection, wire))
            refused = _command_replies(connection, wire)
        except _REFUSALS as error:
            # Refused before its content was sent: nothing else is in flight, the next starts afresh.
            done(key, error)
            if connection.sock is None:  # a 421: the server closed the connection
                raise ConnectionBroken([]) from error
            item, commands_sent = next(items, None), False
            continue
        except BaseException as error:
            done(key, error)
            raise ConnectionBroken([]) from error
        following = next(items, None)
        try:
            payload = _content(wire)
            if following is not None:
                payload += _commands(connection, following[1])
            connection.send(payload)
            if observe is not None:
                observe(not _reply_waiting(connection))
            code, reply = connection.getreply()
        except BaseException as error:
            done(key, error)
            raise ConnectionBroken([] if following is None else [following[0]]) from error
        if code == 250:
            done(key, partly_refused(refused, wire))
        else:
            # The transaction is over either way: no RSET (the next one's commands are already sent).
            done(key, smtplib.SMTPDataError(code, reply))
            if code == 421:
                connection.close()
                raise ConnectionBroken([] if following is None else [following[0]])
        item, commands_sent = following, following is not None


def _reply_waiting(connection: smtplib.SMTP) -> bool:
    """Whether the server's next reply has already arrived (readable without blocking)."""
    sock = connection.sock
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)  # bytes a TLS socket has decrypted but not handed out
    if pending is not None and pending():
        return True
    readable, _writable, _errors = select.select([sock], [], [], 0)
    return bool(readable)


def _commands(connection: smtplib.SMTP, wire: Wire) -> bytes:
    size = f" SIZE={len(wire.data)}" if connection.has_extn("size") else ""
    commands = [f"MAIL FROM:<{wire.sender}>{size}"]
    commands += [f"RCPT TO:<{recipient}>" for recipient in wire.recipients]
    commands.append("DATA")
    return ("\r\n".join(commands) + "\r\n").encode("ascii")


def _command_replies(connection: smtplib.SMTP, wire: Wire) -> dict[str, tuple[int, bytes]]:
    """Read the replies to MAIL, RCPT and DATA; raise (with the connection reset) unless the content may follow.

    Returns the recipients refused (when others were accepted).
    """
    # Every command gets its reply, whatever happened to the ones before it.
    mail_code, mail_reply = connection.getreply()
    refused = {}
    for recipient in wire.recipients:
        code, reply = connection.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    data_code, data_reply = connection.getreply()
    if data_code == 354 and (mail_code != 250 or len(refused) == len(wire.recipients)):
        # Some servers accept DATA even after refusing every recipient: end it empty.
        connection.send(b".\r\n")
        connection.getreply()
    if mail_code != 250:
        _reset(connection, mail_code)
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, wire.sender)
    if len(refused) == len(wire.recipients):
        _reset(connection, next(iter(refused.values()))[0])
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        _reset(connection, data_code)
        raise smtplib.SMTPDataError(data_code, data_reply)
    return refused


def _content(wire: Wire) -> bytes:
    """The message with leading dots doubled, ended by a line holding a single dot."""
    data = _LEADING_DOT.sub(b"..", wire.data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reset(connection: smtplib.SMTP, code: int) -> None:
    """Leave the connection ready for the next message, as ``sendmail`` does (421: the server is closing)."""
    if code == 421:
        connection.close()
        return
    try:
        connection.rset()
    except smtplib.SMTPServerDisconnected:
        pass
