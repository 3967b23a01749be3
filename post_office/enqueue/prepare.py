"""One request made into an unsaved Email: every argument validated, the template rendered.

Each entry point (``mail.send``, ``send_many``, the queueing backend, the
helpers) comes through :func:`prepare`, so they validate exactly alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ..choices import STATUS
from ..conf import settings as po_settings
from ..exceptions import InvalidAddress, InvalidArgument, MissingSender, TemplateConflict
from ..languages import check_language
from ..message.fields import AttachmentData
from ..message.parts import message_id_header, new_message_id
from ..models import Email
from ..rendering.engine import render_parts, render_template
from ..rendering.files import find_file_template, render_file_template
from ..rendering.inline import InlineImage
from ..rendering.lookup import TemplateLookup
from ..transport.connections import check_alias
from ..validation import (
    check_json_context,
    check_no_line_breaks,
    check_schedule,
    is_file_template,
    parse_address,
    parse_addresses,
    parse_datetime,
    parse_headers,
    parse_priority,
)
from .attachments import check_attachment, read_attachments
from .request import EmailRequest


@dataclass
class Prepared:
    """An unsaved Email and the attachments to store with it."""

    email: Email
    attachments: list[AttachmentData] = field(default_factory=list)


def prepare(request: EmailRequest, lookup: TemplateLookup) -> Prepared:
    """Validate and render one request into an unsaved Email; raise an InvalidEmail naming the field."""
    to = parse_addresses(request.recipients, "recipients")
    cc = parse_addresses(request.cc, "cc")
    bcc = parse_addresses(request.bcc, "bcc")
    if not (to or cc or bcc):
        raise InvalidAddress("recipients", request.recipients, "must contain at least one address")
    sender = request.sender or settings.DEFAULT_FROM_EMAIL
    if not sender:
        raise MissingSender("sender", request.sender, "is missing and settings.DEFAULT_FROM_EMAIL is empty")
    sender = parse_address(sender, "sender")
    headers = parse_headers(request.headers)
    priority = _priority(request.priority)
    scheduled_time = parse_datetime(request.scheduled_time, "scheduled_time")
    expires_at = parse_datetime(request.expires_at, "expires_at")
    check_schedule(scheduled_time, expires_at)
    backend_alias = check_alias(request.backend)
    language = check_language(request.language)
    attachments = read_attachments(request.attachments) + [check_attachment(d) for d in request.attachment_data]
    if request.context is not None and not isinstance(request.context, Mapping):
        raise InvalidArgument("context", request.context, "must be a dict")
    email = Email(
        from_email=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        headers=headers,
        priority=priority,
        status=STATUS.queued,
        scheduled_time=scheduled_time,
        expires_at=expires_at,
        backend_alias=backend_alias,
        language=language,
        alternatives=list(request.alternatives),
    )
    if request.template:
        _from_template(email, attachments, request, lookup)
    else:
        _from_parts(email, request, lookup)
    check_no_line_breaks("subject", email.subject)
    email.message_id = message_id_header(headers) or new_message_id()
    return Prepared(email, attachments)


def _priority(value: Any) -> int:
    if value is None:
        return parse_priority(po_settings.DEFAULT_PRIORITY, "POST_OFFICE['DEFAULT_PRIORITY']")
    return parse_priority(value, "priority")


def _from_parts(email: Email, request: EmailRequest, lookup: TemplateLookup) -> None:
    """Subject and bodies as given; rendered as templates only when a context is passed."""
    if request.render_on_delivery:
        raise InvalidArgument("render_on_delivery", True, "needs a template to render from")
    subject = check_no_line_breaks("subject", request.subject or "")
    message, html_message = request.message or "", request.html_message or ""
    if request.context is not None:
        rendered = render_parts(
            subject, message, html_message, request.context, language=email.language, compiled=lookup.compiled
        )
        subject, message, html_message = rendered.subject, rendered.message, rendered.html_message
    email.subject, email.message, email.html_message = subject, message, html_message


def _from_template(
    email: Email, attachments: list[AttachmentData], request: EmailRequest, lookup: TemplateLookup
) -> None:
    given = [name for name in ("subject", "message", "html_message") if getattr(request, name)]
    if given:
        raise TemplateConflict(
            given[0], getattr(request, given[0]), "cannot be combined with template; the template provides it"
        )
    if is_file_template(request.template):
        _from_file_template(email, attachments, request)
        return
    language = email.language
    chosen = lookup.resolve(request.template, language)
    email.template = chosen
    # The fallback taken, if any: 'pt-br' asked for, 'pt' or the base ('') used.
    email.template_language = chosen.language
    # Rendered in the language asked for, whichever translation was found.
    email.language = language or chosen.language
    if request.render_on_delivery:
        email.context = check_json_context(request.context or {})
        return
    rendered = render_template(chosen, request.context or {}, lookup.compiled, language=email.language)
    email.subject, email.message, email.html_message = rendered.subject, rendered.message, rendered.html_message
    attachments.extend(_inline_attachments(rendered.inline_images))


def _from_file_template(email: Email, attachments: list[AttachmentData], request: EmailRequest) -> None:
    """Render a ``file:`` template (django-templated-mail's block format) into the email.

    With ``render_on_delivery`` the file is only looked up now (it must exist
    and compile); the context is stored and the file rendered at delivery.
    """
    if request.render_on_delivery:
        _path, email.template_language = find_file_template(request.template, email.language)
        email.template_file = request.template
        email.context = check_json_context(request.context or {})
        return
    rendered = render_file_template(request.template, request.context or {}, email.language)
    email.template_language = rendered.language
    email.subject, email.message, email.html_message = rendered.subject, rendered.message, rendered.html_message
    attachments.extend(_inline_attachments(rendered.inline_images))


def _inline_attachments(images: tuple[InlineImage, ...]) -> list[AttachmentData]:
    """``{% inline_image %}`` images: stored with the email, sent as related parts of the HTML."""
    return [
        AttachmentData(name=image.filename, content=image.content, mimetype=image.mimetype, headers=image.headers)
        for image in images
    ]
