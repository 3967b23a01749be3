"""Conversion between stored emails and Django ``EmailMessage`` objects.

``build_message`` turns an :class:`~post_office.models.Email` into the Django
message delivery sends; ``fields_from_message`` turns a caller's Django message
into plain fields for the queue (nothing is pickled).
"""

from __future__ import annotations

import email.message
import mimetypes
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from email._policybase import Compat32
from email.mime.base import MIMEBase
from functools import partial
from typing import Any

import django
from django.core.mail import EmailMessage, EmailMultiAlternatives

from .conf import settings as po_settings

DJANGO_61 = django.VERSION >= (6, 1)
# Django reads these from extra headers only under this exact spelling.
_CANONICAL = {"from": "From", "to": "To", "cc": "Cc", "reply-to": "Reply-To", "message-id": "Message-ID"}
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


def attachment_from_part(part: Any) -> AttachmentData:
    """Store a raw MIME part (MIMEBase or MIMEPart) as name, content, type and headers."""
    payload = part.get_payload(decode=True)
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


class _FastCompat32(Compat32):
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
_FAST_COMPAT32 = _FastCompat32()


class QueuedMessage(EmailMultiAlternatives):
    """The Django message delivery sends; serialises faster, byte for byte the same.

    Two costs of the standard library are avoided: a multipart boundary is set
    up front (a random token, as the generator would pick it, without it
    compiling a regular expression for every message to check the boundary is
    unused), and on Django 5.2 short ASCII headers skip the general folding code.
    """

    def message(self, *args: Any, **kwargs: Any) -> Any:
        msg = super().message(*args, **kwargs)
        for part in msg.walk():
            if part.is_multipart() and part.get_boundary() is None:
                # The generator's own format: 15 '=', 19 random digits, '=='.
                part.set_boundary(f"{'=' * 15}{secrets.randbelow(sys.maxsize):019d}==")
        if isinstance(msg.policy, Compat32) and type(msg.policy) is Compat32:
            msg.policy = _FAST_COMPAT32.clone(linesep=msg.policy.linesep, max_line_length=msg.policy.max_line_length)
        return msg


def build_message(email_obj: Any) -> EmailMessage:
    """Build the Django message for a stored email, rendering it first if needed.

    Images made by ``{% inline_image %}`` (rendered now, or stored as attachments
    when the email was rendered at enqueue) become related parts of the HTML
    alternative: ``multipart/related`` holding the HTML and the images.
    """
    subject, body, html = email_obj.subject, email_obj.message, email_obj.html_message
    related: list[tuple[bytes, str, str, dict[str, str]]] = []
    if email_obj.context is not None:
        # Stored context means render_on_delivery.
        rendered = _render_on_delivery(email_obj)
        subject, body, html = rendered.subject, rendered.message, rendered.html_message
        related = [(image.content, image.mimetype, image.filename, image.headers) for image in rendered.inline_images]

    to, cc, bcc = list(email_obj.to), list(email_obj.cc), list(email_obj.bcc)
    override = po_settings.OVERRIDE_RECIPIENTS
    if override:
        to, cc, bcc = list(override), [], []
    headers = {_CANONICAL.get(k.lower(), k): v for k, v in (email_obj.headers or {}).items()}
    if email_obj.message_id and not any(k.lower() == "message-id" for k in headers):
        headers["Message-ID"] = email_obj.message_id

    attachments = _attachments_of(email_obj)
    if html:
        from .inline import is_inline_cid

        for attachment in attachments:
            if is_inline_cid(attachment.headers):
                related.append(
                    (_read_attachment(attachment), _mimetype_of(attachment), attachment.name, attachment.headers)
                )
        attachments = [attachment for attachment in attachments if not is_inline_cid(attachment.headers)]
    else:
        related = []

    fields: dict[str, Any] = {
        "subject": subject,
        "body": body or html,
        "from_email": email_obj.from_email,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "headers": headers,
    }
    message = RelatedQueuedMessage(related=related, **fields) if related else QueuedMessage(**fields)
    if body and html:
        message.attach_alternative(html, "text/html")
    elif html:
        message.content_subtype = "html"
    for content, mimetype in email_obj.alternatives or []:
        message.attach_alternative(content, mimetype)
    for attachment in attachments:
        _attach(message, attachment)
    return message


def _render_on_delivery(email_obj: Any) -> Any:
    """Render a render_on_delivery email; every template error is permanent (PostOfficeError or Django's)."""
    from django.db import DatabaseError
    from django.template import TemplateDoesNotExist, TemplateSyntaxError

    from .exceptions import PostOfficeError, TemplateRenderError, UnknownTemplate
    from .rendering import render_template

    render: Callable[[], Any]
    if email_obj.template_file:
        from .templated import render_file_template

        name = email_obj.template_file
        render = partial(render_file_template, name, email_obj.context, email_obj.language or "")
    else:
        if email_obj.template_id is None:
            raise UnknownTemplate("template", None, "was deleted; this email was to be rendered from it on delivery")
        name = email_obj.template.name
        render = partial(render_template, email_obj.template, email_obj.context, language=email_obj.language or None)
    try:
        return render()
    except (PostOfficeError, TemplateSyntaxError, TemplateDoesNotExist, DatabaseError):
        # Already classified: template errors are permanent, a database outage is not.
        raise
    except Exception as error:
        raise TemplateRenderError(name, error) from error


class RelatedQueuedMessage(QueuedMessage):
    """A QueuedMessage whose HTML part is sent as ``multipart/related`` with its inline images."""

    #: ``(content, mimetype, filename, headers)`` of each image the HTML references by ``cid:``.
    related: list[tuple[bytes, str, str, dict[str, str]]]

    def __init__(self, *args: Any, related: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.related = list(related)

    def message(self, *args: Any, **kwargs: Any) -> Any:
        msg = super().message(*args, **kwargs)
        html_part = next(
            (
                part
                for part in msg.walk()
                if part.get_content_type() == "text/html" and part.get_content_disposition() != "attachment"
            ),
            None,
        )
        if html_part is not None and self.related:
            _make_related(html_part, [make_part(*spec) for spec in self.related])
        return msg


def _make_related(part: Any, related_parts: list[Any]) -> None:
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
    part.set_boundary(f"{'=' * 15}{secrets.randbelow(sys.maxsize):019d}==")


def _attachments_of(email_obj: Any) -> list[Any]:
    if email_obj.pk is None:
        return []
    loaded = getattr(email_obj, "loaded_attachments", None)  # set by the delivery worker's claim
    if loaded is not None:
        return list(loaded)
    cache = getattr(email_obj, "_prefetched_objects_cache", {})
    if "attachments" in cache:
        return list(cache["attachments"])
    # The caller's order is the order of the links; attachment rows are shared
    # between emails and may be older than this email.
    from django.db.models import OuterRef, Subquery

    links = email_obj.attachments.through.objects.filter(email_id=email_obj.pk, attachment_id=OuterRef("pk"))
    return list(email_obj.attachments.annotate(_link=Subquery(links.values("id")[:1])).order_by("_link"))


def _read_attachment(attachment: Any) -> bytes:
    # A handle of our own: one Attachment row (and its FieldFile) is shared by
    # every email that attaches the same content, and threads build them at once.
    with attachment.file.storage.open(attachment.file.name, "rb") as handle:
        return bytes(handle.read())


def _mimetype_of(attachment: Any) -> str:
    return attachment.mimetype or mimetypes.guess_type(attachment.name)[0] or "application/octet-stream"


def _attach(message: EmailMessage, attachment: Any) -> None:
    content = _read_attachment(attachment)
    mimetype = _mimetype_of(attachment)
    if not attachment.headers:
        message.attach(attachment.name or None, content, mimetype)
        return
    message.attach(make_part(content, mimetype, attachment.name, attachment.headers))


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
    else:
        from email import encoders

        if maintype == "text":
            from email.mime.text import MIMEText

            part = MIMEText(content.decode(errors="replace"), subtype, "utf-8")
        else:
            part = MIMEBase(maintype, subtype)
            part.set_payload(content)
            encoders.encode_base64(part)
    if disposition:
        part["Content-Disposition"] = disposition
    elif filename:
        part.add_header("Content-Disposition", "attachment", filename=filename)
    for name, value in extra.items():
        if name in part:
            del part[name]
        part[name] = value
    return part
