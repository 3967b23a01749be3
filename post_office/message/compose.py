"""A stored email turned into the Django message delivery sends (Django's general path)."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable
from email._policybase import Compat32
from email.utils import parseaddr
from functools import partial
from typing import Any

from django.core.files.storage import Storage
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import DatabaseError
from django.db.models import OuterRef, Subquery
from django.template import TemplateDoesNotExist, TemplateSyntaxError

from ..compat import DJANGO_61
from ..conf import settings as po_settings
from ..exceptions import AttachmentMissing, InvalidAttachment, PostOfficeError, TemplateRenderError, UnknownTemplate
from ..models import Attachment, Email
from ..rendering.engine import Rendered, render_template
from ..rendering.files import render_file_template
from ..rendering.inline import is_inline_cid
from ..validation import header_break
from .parts import (
    FAST_COMPAT32,
    base64_part,
    check_addresses,
    check_header_texts,
    headers_of,
    make_part,
    make_related,
    new_boundary,
    only_pending,
    recipients,
)

#: An image the HTML references by ``cid:``: content, mimetype, filename, headers.
RelatedPart = tuple[bytes, str, str, dict[str, str]]


class QueuedMessage(EmailMultiAlternatives):
    """The Django message delivery sends; serialises faster, byte for byte the same.

    Two costs of the standard library are avoided: a multipart boundary is set
    up front (a random token, as the generator would pick it, without it
    compiling a regular expression for every message to check the boundary is
    unused), and on Django 5.2 short ASCII headers skip the general folding code.
    """

    #: The stored email, whose pending recipients (after a partial delivery) narrow the envelope.
    stored: Email | None = None

    def recipients(self) -> list[str]:
        everyone: list[str] = super().recipients()
        if self.stored is None:
            return everyone
        return only_pending(self.stored, everyone, bare=lambda address: parseaddr(address)[1])

    def message(self, *args: Any, **kwargs: Any) -> Any:
        msg = super().message(*args, **kwargs)
        for part in msg.walk():
            if part.is_multipart() and part.get_boundary() is None:
                part.set_boundary(new_boundary())
        if isinstance(msg.policy, Compat32) and type(msg.policy) is Compat32:
            msg.policy = FAST_COMPAT32.clone(linesep=msg.policy.linesep, max_line_length=msg.policy.max_line_length)
        return msg

    def _create_mime_attachment(self, content: Any, mimetype: str) -> Any:
        # Django 5.2 encodes binary content through copies that peak at about eight
        # times its size; base64_part writes the same bytes from one encoding.
        basetype, subtype = mimetype.split("/", 1)
        if DJANGO_61 or basetype in ("text", "message") or not isinstance(content, bytes):
            return super()._create_mime_attachment(content, mimetype)  # type: ignore[misc]
        return base64_part(basetype, subtype, content)


def build_message(email_obj: Email) -> EmailMessage:
    """Build the Django message for a stored email, rendering it first if needed.

    Images made by ``{% inline_image %}`` (rendered now, or stored as attachments
    when the email was rendered at enqueue) become related parts of the HTML
    alternative: ``multipart/related`` holding the HTML and the images.
    """
    subject, body, html = email_obj.subject, email_obj.message, email_obj.html_message
    related: list[RelatedPart] = []
    if email_obj.context is not None:
        # Stored context means render_on_delivery.
        rendered = _render_on_delivery(email_obj)
        subject, body, html = rendered.subject, rendered.message, rendered.html_message
        related = [(image.content, image.mimetype, image.filename, image.headers) for image in rendered.inline_images]

    to, cc, bcc = recipients(email_obj)
    check_header_texts(email_obj, to, cc, bcc)
    check_addresses(email_obj, to, cc, bcc)
    headers = headers_of(email_obj)

    attachments = _attachments_of(email_obj)
    for attachment in attachments:
        texts = [attachment.name, attachment.mimetype, *(f"{k}: {v}" for k, v in (attachment.headers or {}).items())]
        problem = header_break("\t".join(texts))
        if problem:
            raise InvalidAttachment(
                f"attachments[{attachment.name!r}]", attachment.pk, f"has a part header that {problem}"
            )
    if html:
        for attachment in attachments:
            if is_inline_cid(attachment.headers):
                related.append(
                    (_read_attachment(attachment), _mimetype_of(attachment), attachment.name, attachment.headers or {})
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
    if email_obj.pending_recipients:
        message.stored = email_obj
    if body and html:
        message.attach_alternative(html, "text/html")
    elif html:
        message.content_subtype = "html"
    for content, mimetype in email_obj.alternatives or []:
        message.attach_alternative(content, mimetype)
    for attachment in attachments:
        _attach(message, attachment)
    return message


def _render_on_delivery(email_obj: Email) -> Rendered:
    """Render a render_on_delivery email; every template error is permanent (PostOfficeError or Django's)."""
    render: Callable[[], Rendered]
    if email_obj.template_file:
        name = email_obj.template_file
        render = partial(render_file_template, name, email_obj.context, email_obj.language or "")
    else:
        template = email_obj.template if email_obj.template_id is not None else None
        if template is None:
            raise UnknownTemplate("template", None, "was deleted; this email was to be rendered from it on delivery")
        name = template.name
        render = partial(render_template, template, email_obj.context or {}, language=email_obj.language or None)
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
    related: list[RelatedPart]

    def __init__(self, *args: Any, related: Iterable[RelatedPart] = (), **kwargs: Any) -> None:
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
            make_related(html_part, [make_part(*spec) for spec in self.related])
        return msg


def _attachments_of(email_obj: Email) -> list[Attachment]:
    if email_obj.pk is None:
        return []
    loaded = email_obj.loaded_attachments  # set by the delivery worker's claim
    if loaded is not None:
        return list(loaded)
    cache = getattr(email_obj, "_prefetched_objects_cache", {})
    if "attachments" in cache:
        return list(cache["attachments"])
    # The caller's order is the order of the links; attachment rows are shared
    # between emails and may be older than this email.
    links = email_obj.attachments.through.objects.filter(email_id=email_obj.pk, attachment_id=OuterRef("pk"))
    return list(email_obj.attachments.annotate(_link=Subquery(links.values("id")[:1])).order_by("_link"))


def _read_attachment(attachment: Attachment) -> bytes:
    """Read an attachment's file once; a file gone from the storage is AttachmentMissing (permanent)."""
    # A handle of our own: one Attachment row (and its FieldFile) is shared by
    # every email that attaches the same content, and threads build them at once.
    storage = attachment.file.storage
    name = attachment.file.name or ""
    try:
        if not name:
            raise FileNotFoundError(name)
        with storage.open(name, "rb") as handle:
            content = handle.read()
    except Exception as error:
        if isinstance(error, FileNotFoundError) or not _exists(storage, name):
            raise AttachmentMissing(attachment.name, name, po_settings.FILE_STORAGE) from error
        raise  # the storage may be out of reach for now: transient
    return content if isinstance(content, bytes) else bytes(content)


def _exists(storage: Storage, name: str) -> bool:
    """Whether the storage has the file; True when it cannot tell (an outage is not a missing file)."""
    try:
        return bool(name) and storage.exists(name)
    except Exception:  # noqa: BLE001 - the storage's own errors, whatever its backend
        return True


def _mimetype_of(attachment: Attachment) -> str:
    return attachment.mimetype or mimetypes.guess_type(attachment.name)[0] or "application/octet-stream"


def _attach(message: EmailMessage, attachment: Attachment) -> None:
    content = _read_attachment(attachment)
    mimetype = _mimetype_of(attachment)
    if not attachment.headers:
        message.attach(attachment.name or None, content, mimetype)
        return
    message.attach(make_part(content, mimetype, attachment.name, attachment.headers))
