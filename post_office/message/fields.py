"""A caller's Django message read into plain fields for the queue (nothing is pickled)."""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass, field
from email.mime.base import MIMEBase
from typing import Any

from django.core.mail import EmailMessage

_PART_HEADERS_SET_BY_US = {"content-type", "content-transfer-encoding", "mime-version"}


@dataclass
class AttachmentData:
    """One attachment as plain data, before it is stored."""

    name: str
    content: bytes
    mimetype: str = ""
    headers: dict[str, str] | None = None


@dataclass
class MessageFields:
    """What the queue stores for one caller's message."""

    from_email: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    message: str
    html_message: str
    headers: dict[str, str]
    alternatives: list[list[str]] = field(default_factory=list)
    attachments: list[AttachmentData] = field(default_factory=list)


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _as_text(content: Any) -> str:
    return content.decode() if isinstance(content, bytes) else str(content)


def _as_bytes(content: Any) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    raise TypeError(f"attachment content must be str or bytes, not {type(content).__name__}")


def attachment_from_part(part: email.message.Message) -> AttachmentData:
    """Store a raw MIME part (MIMEBase or MIMEPart) as name, content, type and headers."""
    decoded = part.get_payload(decode=True)  # bytes, or None for a multipart part
    payload = decoded if isinstance(decoded, bytes) else None
    if payload is None:
        # A multipart part: keep its serialised body so it survives the trip.
        payload = part.as_bytes()
    elif part.get_content_maintype() == "text":
        # make_part rebuilds text parts as UTF-8, so store the text as UTF-8.
        charset = part.get_content_charset() or "us-ascii"
        try:
            payload = payload.decode(charset).encode()
        except (LookupError, UnicodeDecodeError):
            pass
    headers = {name: _unfold(str(value)) for name, value in part.items() if name.lower() not in _PART_HEADERS_SET_BY_US}
    return AttachmentData(
        name=part.get_filename() or "",
        content=payload,
        mimetype=part.get_content_type(),
        headers=headers or None,
    )


def fields_from_message(message: EmailMessage) -> MessageFields:
    """Read a Django message without changing it."""
    html = ""
    others: list[list[str]] = []
    body = _as_text(message.body or "")
    if getattr(message, "content_subtype", "plain") == "html":
        html, body = body, ""
    for alternative in getattr(message, "alternatives", None) or []:
        content, mimetype = alternative[0], alternative[1]
        # html_message is sent as the first alternative; an HTML part after another
        # alternative stays in its place (the last alternative is the preferred one).
        if mimetype == "text/html" and not html and not others:
            html = _as_text(content)
        else:
            others.append([_as_text(content), mimetype])
    headers = {str(k): str(v) for k, v in (message.extra_headers or {}).items()}
    if message.reply_to and not any(k.lower() == "reply-to" for k in headers):
        headers["Reply-To"] = ", ".join(str(a) for a in message.reply_to)
    attachments = []
    for item in message.attachments:
        if isinstance(item, (MIMEBase, email.message.MIMEPart)):
            attachments.append(attachment_from_part(item))
        else:
            filename, content, mimetype = item[0], item[1], item[2]
            attachments.append(AttachmentData(name=filename or "", content=_as_bytes(content), mimetype=mimetype or ""))
    return MessageFields(
        from_email=str(message.from_email or ""),
        to=[str(a) for a in message.to],
        cc=[str(a) for a in message.cc],
        bcc=[str(a) for a in message.bcc],
        subject=str(message.subject or ""),
        message=body,
        html_message=html,
        headers=headers,
        alternatives=others,
        attachments=attachments,
    )
