"""Django's SMTP backend, plus a fast way for the delivery worker to send a stored email.

``EmailBackend`` behaves exactly like ``django.core.mail.backends.smtp.EmailBackend``
(same settings, same ``send_messages``); delivery uses it in place of Django's
class when an alias names that class. It adds :meth:`EmailBackend.send_wire`,
which sends bytes made by :func:`post_office.wire.serialize`: the addresses were
validated when the email was queued and the message is already serialised, and
when the server offers PIPELINING (RFC 2920) the MAIL, RCPT and DATA commands go
out in one write, so a message costs two round trips instead of four.
Failures raise the same ``smtplib`` exceptions ``sendmail`` raises, so the retry
policy classifies them the same way.
"""

from __future__ import annotations

import re
import smtplib

from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from .wire import Wire

_LEADING_DOT = re.compile(rb"(?m)^\.")


class EmailBackend(DjangoSMTPBackend):
    """Django's SMTP backend that can also send a pre-serialised stored email."""

    def send_wire(self, wire: Wire) -> None:
        """Send one serialised email on this connection; raise on any failure."""
        if self.connection is None:
            self.open()
        connection = self.connection
        assert connection is not None
        connection.ehlo_or_helo_if_needed()
        if connection.does_esmtp and connection.has_extn("pipelining"):
            send_pipelined(connection, wire)
        else:
            connection.sendmail(wire.sender, wire.recipients, wire.data)


def send_pipelined(connection: smtplib.SMTP, wire: Wire) -> None:
    """One SMTP transaction with MAIL, RCPT and DATA sent together (the server offers PIPELINING)."""
    size = f" SIZE={len(wire.data)}" if connection.has_extn("size") else ""
    commands = [f"MAIL FROM:<{wire.sender}>{size}"]
    commands += [f"RCPT TO:<{recipient}>" for recipient in wire.recipients]
    commands.append("DATA")
    connection.send(("\r\n".join(commands) + "\r\n").encode("ascii"))
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
    data = _LEADING_DOT.sub(b"..", wire.data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    connection.send(data + b".\r\n")
    code, reply = connection.getreply()
    if code != 250:
        _reset(connection, code)
        raise smtplib.SMTPDataError(code, reply)
    # Recipients refused while others were accepted are ignored, as Django's backend ignores them.


def _reset(connection: smtplib.SMTP, code: int) -> None:
    """Leave the connection ready for the next message, as ``sendmail`` does (421: the server is closing)."""
    if code == 421:
        connection.close()
        return
    try:
        connection.rset()
    except smtplib.SMTPServerDisconnected:
        pass
