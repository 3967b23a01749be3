"""One request made into an unsaved Email: every argument validated, the template rendered.

Each entry point (``mail.send``, ``send_many``, the queueing backend, the
helpers) comes through :func:`prepare`, so they validate exactly alike.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, models
from django.template import TemplateSyntaxError

from ..choices import STATUS
from ..conf import settings as po_settings
from ..exceptions import (
    InvalidAddress,
    InvalidArgument,
    InvalidAttachment,
    InvalidHeader,
    MissingSender,
    PostOfficeError,
    TemplateConflict,
    TemplateRenderError,
    TemplateSyntaxInvalid,
)
from ..languages import check_language
from ..message.fields import AttachmentData
from ..message.parts import message_id_header, new_message_id
from ..models import Attachment, Email, EmailTemplate
from ..rendering.engine import render_parts, render_template
from ..rendering.files import find_file_template, render_file_template
from ..rendering.inline import InlineImage
from ..rendering.lookup import TemplateLookup
from ..transport.connections import check_alias
from ..validation import (
    check_json_context,
    check_length,
    check_no_line_breaks,
    check_schedule,
    check_text,
    is_file_template,
    parse_address,
    parse_addresses,
    parse_datetime,
    parse_headers,
    parse_priority,
    syntax_error_line,
    text_problem,
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
    sender = check_length(InvalidAddress, "sender", parse_address(sender, "sender"), _column(Email, "from_email"))
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
    _check_template_argument(request.template)
    alternatives = _alternatives(request.alternatives)
    email = _new_email(
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
        alternatives=alternatives,
    )
    email.checked = True  # by this function: its insert is not checked again (model_compat)
    if request.template:
        _from_template(email, attachments, request, lookup)
    else:
        _from_parts(email, request, lookup)
    check_no_line_breaks("subject", email.subject)
    check_length(InvalidHeader, "subject", email.subject, _column(Email, "subject"))
    email.message, email.html_message = (
        check_text("message", email.message),
        check_text("html_message", email.html_message),
    )
    email.message_id = message_id_header(headers) or new_message_id()
    check_length(InvalidHeader, "headers['Message-ID']", email.message_id or "", _column(Email, "message_id"))
    _check_attachment_columns(attachments)
    return Prepared(email, attachments)


def _new_email(**values: Any) -> Email:
    """An unsaved Email with these column values (attribute names) and every other column's default.

    Built as Django builds a row read from the database (every concrete field
    in order, positionally): the same instance as ``Email(**values)``, for half
    its cost on the enqueue path.
    """
    fields, attnames = _email_fields()
    unknown = values.keys() - attnames
    if unknown:
        raise TypeError(f"Email has no columns {sorted(unknown)}")
    row = [
        values[attname] if attname in values else default() if call else default for attname, default, call in fields
    ]
    return Email(*row)  # type: ignore[misc]  # the positional form: one value per concrete field


@functools.cache
def _email_fields() -> tuple[list[tuple[str, Any, bool]], frozenset[str]]:
    """Each concrete field's attname and default: a value where ``get_default()`` always gives the same immutable one.

    Otherwise (a callable default, a mutable one) ``get_default`` itself, called per email.
    """
    fields: list[tuple[str, Any, bool]] = []
    for column in Email._meta.concrete_fields:
        constant = column.get_default()
        if (column.has_default() and callable(column.default)) or not isinstance(
            constant, (type(None), str, int, float, bool)
        ):
            fields.append((column.attname, column.get_default, True))
        else:
            fields.append((column.attname, constant, False))
    return fields, frozenset(attname for attname, _default, _call in fields)


def _column(model: type[Email] | type[Attachment] | type[EmailTemplate], name: str) -> int:
    """The length of a text column, as the model declares it."""
    column = model._meta.get_field(name)
    assert isinstance(column, models.CharField) and column.max_length is not None
    return column.max_length


def template_names(requests: Iterable[Any]) -> set[str]:
    """The database template names that requests may look up: those :func:`prepare` accepts."""
    names = {request.template for request in requests if isinstance(request.template, str) and request.template}
    return {
        name
        for name in names
        if not is_file_template(name) and len(name) <= _column(EmailTemplate, "name") and not text_problem(name)
    }


def _check_template_argument(template: Any) -> None:
    """A template is a saved EmailTemplate or a name that fits its column, with no NUL or lone surrogate."""
    if template in (None, ""):
        return
    if isinstance(template, EmailTemplate):
        if template.pk is None:
            raise InvalidArgument("template", template, "is an EmailTemplate that is not saved")
        return
    if not isinstance(template, str):
        raise InvalidArgument("template", template, "must be a template name or an EmailTemplate")
    problem = text_problem(template)
    if problem:
        raise InvalidArgument("template", template, problem)
    limit = _column(Email, "template_file") if is_file_template(template) else _column(EmailTemplate, "name")
    check_length(InvalidArgument, "template", template, limit)


def _alternatives(alternatives: list[list[str]]) -> list[list[str]]:
    """A Django message's other alternatives: text without NUL and a MIME type that fits a part header."""
    checked = []
    for index, (content, mimetype) in enumerate(alternatives):
        where = f"alternatives[{index}]"
        mimetype = check_no_line_breaks(f"{where} mimetype", mimetype)
        if mimetype.count("/") != 1 or not all(mimetype.split("/")):
            raise InvalidArgument(f"{where} mimetype", mimetype, "is not a MIME type like 'text/calendar'")
        checked.append([check_text(f"{where} content", content), mimetype])
    return checked


def _check_attachment_columns(attachments: list[AttachmentData]) -> None:
    for data in attachments:
        check_length(InvalidAttachment, "attachments", data.name, _column(Attachment, "name"))
        check_length(
            InvalidAttachment, f"attachments[{data.name!r}]['mimetype']", data.mimetype, _column(Attachment, "mimetype")
        )


@contextmanager
def rendering_errors(source: str, fields: Iterable[str] = ()) -> Iterator[None]:
    """Make an error raised while rendering the caller's template or context one of ours.

    A syntax error is TemplateSyntaxInvalid; anything the context's values raise
    (a broken ``__str__``, a RecursionError from deep nesting) is TemplateRenderError.
    Our own errors, configuration errors and database errors pass unchanged.
    """
    try:
        yield
    except (PostOfficeError, ImproperlyConfigured, DatabaseError):
        raise
    except TemplateSyntaxError as error:
        line = syntax_error_line(error)
        raise TemplateSyntaxInvalid(
            {name: f"line {line}: {error}" if line else str(error) for name in fields or [source]}
        ) from error
    except Exception as error:  # noqa: BLE001 - whatever the caller's values raise, the caller learns it as ours
        raise TemplateRenderError(source, error) from error


def _priority(value: Any) -> int:
    if value is None:
        return parse_priority(po_settings.DEFAULT_PRIORITY, "POST_OFFICE['DEFAULT_PRIORITY']")
    return parse_priority(value, "priority")


def _from_parts(email: Email, request: EmailRequest, lookup: TemplateLookup) -> None:
    """Subject and bodies as given; rendered as templates only when a context is passed."""
    if request.render_on_delivery:
        raise InvalidArgument("render_on_delivery", True, "needs a template to render from")
    subject = check_no_line_breaks("subject", "" if request.subject is None else request.subject)
    message, html_message = check_text("message", request.message), check_text("html_message", request.html_message)
    if request.context is not None:
        parts = {"subject": subject, "message": message, "html_message": html_message}
        for name, source in parts.items():
            if source:
                with rendering_errors("the message", [name]):
                    lookup.compiled.compile(source)
        with rendering_errors("the message"):
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
    with rendering_errors(f"template {chosen.name!r}"):
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
    with rendering_errors(request.template):
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
