"""A stored email written straight to the bytes an SMTP server receives.

Delivery through Django's SMTP backend builds an ``EmailMessage``, turns it into
a tree of ``email.mime`` objects, serialises that with the email package's
generator and parses every address again to write the envelope. For the shapes
almost every queued email has -- plain text, HTML, or both as alternatives,
with any headers, no attachments -- :func:`serialize` writes the same bytes
directly, several times faster. It follows Django 5.2's ``message()`` and its
compat32 generator rule by rule; tests/test_wire.py checks the output byte for
byte against Django's and, on every Django version, part by part after parsing.

Anything else (attachments, other alternatives, rendering at delivery, a
non-UTF-8 ``DEFAULT_CHARSET``, lines too long for 8bit, addresses that are not
plain ASCII) returns None and goes the general way, through Django.
"""

from __future__ import annotations

import re
from email.header import Header
from email.utils import formatdate, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail.utils import DNS_NAME

from ..models import Email
from ..transport.smtp import Wire
from .parts import (
    FAST_COMPAT32,
    check_header_texts,
    envelope_address,
    headers_of,
    new_boundary,
    only_pending,
    recipients,
)

__all__ = ["Wire", "envelope_address", "serialize"]

#: compat32 folding with CRLF line ends, as Django's ``as_bytes(linesep="\r\n")`` uses.
_POLICY = FAST_COMPAT32.clone(linesep="\r\n")
_NEWLINES = re.compile(r"\r\n|\r|\n")
#: RFC 5322's limit on a line; Django switches such bodies to quoted-printable.
_MAX_LINE = 998
_LIST_HEADERS = ("To", "Cc", "Reply-To")
#: Headers whose non-ASCII values Django encodes address by address.
_ADDRESS_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender", "resent-to", "resent-cc"}
    | {"resent-bcc"}
)


def serialize(email: Email) -> Wire | None:
    """Write a stored email's message, or return None when only Django's general path handles it."""
    if email.context is not None or email.alternatives or email.loaded_attachments != []:
        return None  # rendered at delivery, other alternatives, attachments (or not loaded by a claim)
    if settings.DEFAULT_CHARSET.lower() != "utf-8":
        return None
    to, cc, bcc = recipients(email)
    check_header_texts(email, to, cc, bcc)
    sender = envelope_address(email.from_email)
    found = [envelope_address(address) for address in to + cc + bcc if address]
    envelope = [address for address in found if address is not None]
    if sender is None or not envelope or len(envelope) != len(found):
        return None
    envelope = only_pending(email, envelope)

    body, html = email.message, email.html_message
    parts = [(body, "plain"), (html, "html")] if body and html else [(body or html, "html" if html else "plain")]
    encoded = []
    for text, subtype in parts:
        part = _text_part(text, subtype)
        if part is None:
            return None
        encoded.append(part)

    try:
        data = _message_bytes(email, to, cc, encoded)
    except _GeneralPath:
        return None
    return Wire(sender, envelope, data)


def _message_bytes(email: Email, to: list[str], cc: list[str], encoded: list[tuple[bytes, bytes]]) -> bytes:
    """Headers in the order Django's ``message()`` sets them, then the body (raises _GeneralPath)."""
    headers = headers_of(email)
    out: list[bytes] = []
    if len(encoded) == 1:
        out.append(encoded[0][0])
        boundary = ""
    else:
        boundary = new_boundary()
        out.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\nMIME-Version: 1.0\r\n'.encode())
    _header(out, "Subject", email.subject)
    _header(out, "From", headers.get("From", email.from_email))
    for name, values in zip(_LIST_HEADERS, (to, cc, None), strict=True):
        if name in headers:
            _header(out, name, headers[name])
        elif values:
            _header(out, name, ", ".join(values))
    lowered = {name.lower() for name in headers}
    if "date" not in lowered:
        _header(out, "Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
    if "message-id" not in lowered:
        _header(out, "Message-ID", make_msgid(domain=DNS_NAME))
    for name, value in headers.items():
        if name.lower() not in ("from", "to", "cc", "reply-to"):
            _header(out, name, value)
    out.append(b"\r\n")
    if boundary:
        delimiter = f"--{boundary}\r\n".encode()
        out.append(delimiter)
        out.append(_join_parts(encoded, delimiter))
        out.append(f"\r\n--{boundary}--\r\n".encode())
    else:
        out.append(encoded[0][1])
    return b"".join(out)


def _join_parts(encoded: list[tuple[bytes, bytes]], delimiter: bytes) -> bytes:
    """Parts separated as the generator does: CRLF, the delimiter line, the next part."""
    return (b"\r\n" + delimiter).join(headers + b"\r\n" + body for headers, body in encoded)


#: Printable ASCII words with single spaces between them: such a value, when short, is written as it is.
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*\Z")


def _header(out: list[bytes], name: str, value: Any) -> None:
    """Append a header as Django 5.2's SafeMIMEText stores it and compat32 folds it."""
    text = str(value)
    if len(name) + len(text) < 74 and "=?" not in text and _PLAIN_VALUE.match(text):
        # What the encoding and folding below give for it, without their cost.
        out.append(f"{name}: {text}\r\n".encode("ascii"))
        return
    if "\n" in text or "\r" in text:
        raise _GeneralPath  # Django refuses it with its own error
    if text.isascii():
        if name.lower() == "subject":
            text = Header(text).encode()
    elif name.lower() in _ADDRESS_HEADERS:
        raise _GeneralPath  # non-ASCII addresses need Django's address encoding
    else:
        text = Header(text, "utf-8").encode()
    out.append(_POLICY.fold_binary(name, text))


class _GeneralPath(Exception):
    """This email needs Django's general path."""


def _text_part(text: str, subtype: str) -> tuple[bytes, bytes] | None:
    """Headers and body of a text part as Django's SafeMIMEText writes them, or None for quoted-printable."""
    if not isinstance(text, str):
        return None
    data = text.encode("utf-8", "surrogateescape")
    if len(data) > _MAX_LINE and any(
        len(line.encode(errors="surrogateescape")) > _MAX_LINE for line in text.splitlines()
    ):
        return None  # Django sends these quoted-printable
    encoding = "7bit" if data.isascii() else "8bit"
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n"
    ).encode()
    return headers, _NEWLINES.sub("\r\n", text).encode("utf-8", "surrogateescape")
