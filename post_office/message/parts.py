"""MIME conventions shared by every way a stored email becomes a message.

Django's path (:mod:`post_office.message.compose`) and the direct writer
(:mod:`post_office.message.wire`) take from here the recipients an email goes
to, its headers, the Message-ID, multipart boundaries and header folding, so
both write the same message.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import itertools
import os
import re
import sys
from collections.abc import Callable, Mapping
from email._policybase import Compat32
from email.mime.base import MIMEBase
from email.mime.text import MIMEText
from typing import TYPE_CHECKING, Any

from django.core.mail import make_msgid

from ..compat import DJANGO_61
from ..conf import settings as po_settings
from ..exceptions import InvalidHeader
from ..validation import header_break, parse_address

if TYPE_CHECKING:
    from ..models import Email

#: Django reads these from extra headers only under this exact spelling.
CANONICAL = {"from": "From", "to": "To", "cc": "Cc", "reply-to": "Reply-To", "message-id": "Message-ID"}


def new_message_id() -> str | None:
    """The Message-ID stored with a newly queued email (``MESSAGE_ID_ENABLED``, ``MESSAGE_ID_FQDN``), or None."""
    if po_settings.MESSAGE_ID_ENABLED:
        return make_msgid(domain=po_settings.MESSAGE_ID_FQDN)
    return None


def message_id_header(headers: Mapping[str, str] | None) -> str | None:
    """The value of a caller's own ``Message-ID`` header (any spelling), or None."""
    for name, value in (headers or {}).items():
        if name.lower() == "message-id":
            return str(value)
    return None


def recipients(stored: Email) -> tuple[list[str], list[str], list[str]]:
    """An email's ``to``, ``cc`` and ``bcc`` as sent: all to ``OVERRIDE_RECIPIENTS`` when that is set."""
    override = po_settings.OVERRIDE_RECIPIENTS
    if override:
        return list(override), [], []
    return list(stored.to), list(stored.cc), list(stored.bcc)


def only_pending(stored: Email, envelope: list[str], bare: Callable[[str], str] = lambda address: address) -> list[str]:
    """The envelope recipients of this attempt: after a partial delivery, only those still to deliver to.

    ``bare`` gives the address an entry of ``envelope`` stands for (what the server was sent).
    """
    pending = stored.pending_recipients
    if not pending:
        return envelope
    wanted = {str(address).lower() for address in pending}
    return [address for address in envelope if bare(address).lower() in wanted]


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
#: Addresses whose envelope form can be read off without a parser: ``a@b.c``,
#: ``Name <a@b.c>`` and ``"Any, Name" <a@b.c>``, printable ASCII only.
_BARE = re.compile(rf"({_ADDR_SPEC})\Z")
_NAMED = re.compile(rf'(?:[A-Za-z0-9!#$%&\'*+/=?^_`{{|}}~.\- ]*|"[ !#-\[\]-~]*") <({_ADDR_SPEC})>\Z')


def envelope_address(address: str) -> str | None:
    """The bare address SMTP's MAIL FROM / RCPT TO carries, or None if it needs a real parser."""
    match = _BARE.match(address) or _NAMED.match(address)
    return match.group(1) if match else None


def check_addresses(stored: Email, to: list[str], cc: list[str], bcc: list[str]) -> None:
    """Refuse for good (InvalidAddress) an address enqueue would have refused: a row written some other way.

    Retrying cannot make such an address valid, so it is not a transient failure.
    """
    bare, named = _BARE.match, _NAMED.match
    for field, addresses in (("from_email", [stored.from_email]), ("to", to), ("cc", cc), ("bcc", bcc)):
        for index, address in enumerate(addresses):
            if not isinstance(address, str) or not (bare(address) or named(address)):
                parse_address(address, field if field == "from_email" else f"{field}[{index}]")


def check_header_texts(stored: Email, to: list[str], cc: list[str], bcc: list[str]) -> None:
    """Refuse (for good: InvalidHeader) an email whose header texts hold a line break or NUL.

    Every entry point refuses them when the email is queued; this guards rows
    written some other way (the ORM, an old version), on both ways of writing.
    """
    headers = stored.headers or {}
    everything = [stored.subject, stored.from_email, stored.message_id or "", *to, *cc, *bcc]
    if header_break("\t".join(everything + [f"{name}\t{value}" for name, value in headers.items()])) is None:
        return  # the common case: one search over all of it
    texts = {"subject": stored.subject, "from_email": stored.from_email, "message_id": stored.message_id or ""}
    texts.update({f"to[{i}]": address for i, address in enumerate(to)})
    texts.update({f"cc[{i}]": address for i, address in enumerate(cc)})
    texts.update({f"bcc[{i}]": address for i, address in enumerate(bcc)})
    for name, value in headers.items():
        texts[f"headers name {name!r}"] = str(name)
        texts[f"headers[{name!r}]"] = str(value)
    for field, text in texts.items():
        problem = header_break(text)
        if problem:
            raise InvalidHeader(field, text, problem)


def headers_of(stored: Email) -> dict[str, str]:
    """An email's extra headers as sent: names Django reads spelled its way, and the stored Message-ID."""
    headers = {CANONICAL.get(name.lower(), name): value for name, value in (stored.headers or {}).items()}
    if stored.message_id and not any(name.lower() == "message-id" for name in headers):
        headers["Message-ID"] = stored.message_id
    return headers


class _Boundaries:
    """Unpredictable MIME boundary numbers without a system call per message.

    A keyed BLAKE2b of a counter, the key drawn from the OS once per process
    (again in a forked child, so workers started with ``-p`` do not share it).
    """

    key = os.urandom(32)
    counter = itertools.count()

    @classmethod
    def reseed(cls) -> None:
        cls.key, cls.counter = os.urandom(32), itertools.count()


os.register_at_fork(after_in_child=_Boundaries.reseed)


def new_boundary() -> str:
    """A multipart boundary in the standard library generator's own format: 15 '=', 19 digits, '=='."""
    digest = hashlib.blake2b(next(_Boundaries.counter).to_bytes(8, "little"), key=_Boundaries.key, digest_size=8)
    return f"{'=' * 15}{int.from_bytes(digest.digest(), 'little') % sys.maxsize:019d}=="


class FastCompat32(Compat32):
    """compat32 header folding with a shortcut for short printable ASCII headers.

    Such a header folds to itself (``name: value``); the general algorithm
    (``email.header.Header``) costs about a tenth of a millisecond per header
    to find that out, which adds up at hundreds of emails per second.
    tests/test_mime.py checks the shortcut against the general algorithm.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        limit = self.max_line_length
        if (
            isinstance(value, str)
            and limit is not None
            and len(name) + len(value) + 2 <= limit
            and _SIMPLE_HEADER.match(value)
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc]  # private in typeshed, public in CPython


_SIMPLE_HEADER = re.compile(r"[\t\x20-\x7e]*\Z")
FAST_COMPAT32 = FastCompat32()


#: Bytes of content on one 76-character base64 line, and how many lines are encoded at a time.
_B64_LINE = 57
_B64_BLOCK = _B64_LINE * 1024


def base64_part(maintype: str, subtype: str, content: bytes) -> MIMEBase:
    """A compat32 part of base64 content, byte for byte what ``encoders.encode_base64`` makes.

    Without its copies: ``set_payload(bytes)`` keeps the content as a string of
    escaped surrogates (two bytes a byte) and ``encode_base64`` encodes it back,
    then ``base64.encodebytes`` makes a bytes object per line, so a part peaks
    at about eight times the content's size. Here the lines are encoded a block
    at a time into one buffer, the size of the result: under three times.
    """
    part = MIMEBase(maintype, subtype)
    part.set_payload(_base64_text(content))
    part["Content-Transfer-Encoding"] = "base64"
    return part


def _base64_text(content: bytes) -> str:
    size = len(content)
    full, rest = divmod(size, _B64_LINE)
    # 76 characters and a newline a full line; the last line is shorter.
    length = full * 77 + (-(-rest // 3) * 4 + 1 if rest else 0)
    encoded = bytearray(length)
    view = memoryview(content)
    position = 0
    for start in range(0, size, _B64_BLOCK):
        block = base64.encodebytes(view[start : start + _B64_BLOCK])
        encoded[position : position + len(block)] = block
        position += len(block)
    return encoded.decode("ascii")


def make_part(content: bytes, mimetype: str, filename: str, headers: dict[str, str]) -> Any:
    """Build a MIME part carrying custom headers (e.g. Content-ID for inline images)."""
    maintype, subtype = mimetype.split("/", 1)
    disposition = next((v for k, v in headers.items() if k.lower() == "content-disposition"), None)
    extra = {k: v for k, v in headers.items() if k.lower() != "content-disposition"}
    if DJANGO_61:
        part: Any = email.message.MIMEPart()
        if maintype == "text":
            part.set_content(content.decode(errors="replace"), subtype=subtype)
        else:
            part.set_content(content, maintype=maintype, subtype=subtype)
    elif maintype == "text":
        part = MIMEText(content.decode(errors="replace"), subtype, "utf-8")
    else:
        part = base64_part(maintype, subtype, content)
    if disposition:
        part["Content-Disposition"] = disposition
    elif filename:
        part.add_header("Content-Disposition", "attachment", filename=filename)
    for name, value in extra.items():
        if name in part:
            del part[name]
        part[name] = value
    return part


def make_related(part: Any, related_parts: list[Any]) -> None:
    """Turn a text/html part, in place, into multipart/related holding it and the related parts.

    In place, because the part may be the message itself (an HTML-only email)
    with its Subject, From and To. Works on both of the standard library's
    message classes (compat32 ``Message``, which Django 5.2 builds, and
    ``MIMEPart``, which Django 6.1 builds).
    """
    inner: Any = (
        email.message.MIMEPart(policy=part.policy)
        if isinstance(part, email.message.MIMEPart)
        else email.message.Message(policy=part.policy)
    )
    content_headers = [(name, value) for name, value in part._headers if name.lower().startswith("content-")]
    inner._headers = content_headers
    inner._payload = part._payload
    inner._charset = getattr(part, "_charset", None)
    part._headers = [(name, value) for name, value in part._headers if not name.lower().startswith("content-")]
    part._payload = [inner, *related_parts]
    part._charset = None
    part["Content-Type"] = "multipart/related"
    # RFC 2387: the type of the root part (the first one, the HTML).
    part.set_param("type", "text/html")
    part.set_boundary(new_boundary())
