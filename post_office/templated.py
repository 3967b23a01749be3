"""File templates in django-templated-mail's block format, and its message class with queue options.

A file template is a Django template with the blocks ``subject``,
``text_body`` and ``html_body``; ``mail.send(template='file:email/welcome.html')``
renders one (the rendering lives in :mod:`post_office.rendering.files`).
:class:`TemplatedEmailMessage` is django-templated-mail's ``BaseEmailMessage``
rendered that way, carrying queue options for ``post_office.EmailBackend``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.http import HttpRequest
from templated_mail.mail import BaseEmailMessage

from .conf import settings as po_settings
from .enqueue.backend import EmailBackend, ignored_options, options_of, sending_backend, set_queue_options
from .enqueue.prepare import rendering_errors
from .exceptions import InvalidArgument
from .languages import check_language
from .message.parts import make_part
from .rendering.files import (
    BLOCK_NAMES,
    RenderedFile,
    file_template_candidates,
    find_file_template,
    render_blocks,
    render_file_template,
    template_context,
)
from .rendering.inline import InlineImage
from .rendering.plaintext import html_to_text
from .validation import FILE_PREFIX, check_database_template_name, is_file_template

__all__ = [
    "FILE_PREFIX",
    "BLOCK_NAMES",
    "TemplatedEmailMessage",
    "check_database_template_name",
    "RenderedFile",
    "file_template_candidates",
    "find_file_template",
    "is_file_template",
    "render_file_template",
    "template_context",
]

logger = logging.getLogger(__name__)


class TemplatedEmailMessage(BaseEmailMessage):
    """django-templated-mail's ``BaseEmailMessage`` that carries queue options and renders blocks correctly.

    Use it like ``BaseEmailMessage`` (``Message(request, context).send([to])``,
    ``template_name`` on the class or as an argument). Queue options can be
    class attributes of a subclass, keyword arguments of the constructor or of
    ``send()``: ``priority``, ``scheduled_time``, ``expires_at``, ``backend``
    (the delivery alias) and ``language``. They are validated at once and read
    by ``post_office.EmailBackend`` when it queues the message. ``language``
    also picks the file (``email/welcome.de.html``) and the active language
    while rendering.

    Unlike 1.1.1's ``BaseEmailMessage``: blocks of templates that use
    ``{% extends %}`` are rendered; rendering twice never attaches the HTML part
    twice; the subject and plain-text body are not autoescaped; and ``send()``
    keeps ``cc``, ``bcc``, ``reply_to`` and ``from_email`` given to the
    constructor unless it is passed new ones.
    """

    # Set by Django's EmailMessage (declared for type checkers: templated_mail has no types).
    subject: str
    body: str
    attachments: list[Any]
    alternatives: list[Any]

    priority: str | int | None = None
    scheduled_time: datetime.datetime | datetime.date | None = None
    expires_at: datetime.datetime | datetime.date | None = None
    backend: str | None = None
    language: str | None = None

    def __init__(
        self,
        request: HttpRequest | None = None,
        context: Mapping[str, Any] | None = None,
        template_name: str | None = None,
        *args: Any,
        priority: str | int | None = None,
        scheduled_time: datetime.datetime | datetime.date | None = None,
        expires_at: datetime.datetime | datetime.date | None = None,
        backend: str | None = None,
        language: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(request, context, template_name, *args, **kwargs)
        # What rendering starts from each time: the values given to the constructor.
        self._given_subject, self._given_body = self.subject, self.body
        self._html_alternative: Any = None
        self._html_only = False
        self._inline_parts: list[Any] = []
        given = {
            "priority": priority,
            "scheduled_time": scheduled_time,
            "expires_at": expires_at,
            "backend": backend,
            "language": language,
        }
        defaults = {option: getattr(type(self), option) for option in given}
        options = {k: v if v is not None else defaults[k] for k, v in given.items()}
        set_queue_options(self, options, check_connection=True)

    def _queue_language(self) -> str:
        return options_of(self).get("language") or ""

    def render(self) -> None:
        """Render subject, body and HTML from ``template_name`` (again, from scratch, when called again)."""
        if not self.template_name:
            raise InvalidArgument("template_name", self.template_name, "is not set on this message")
        if not isinstance(self.template_name, str):
            raise InvalidArgument("template_name", self.template_name, "must be a template name")
        if not isinstance(self.context, Mapping) or not all(isinstance(key, str) for key in self.context):
            raise InvalidArgument("context", self.context, "must be a dict with string keys")
        language = check_language(self._queue_language())
        with rendering_errors(self.template_name):
            result = render_blocks(
                self.template_name, self.get_context_data(), language=language, request=self.request, required=False
            )
        subject, body, html = (result.parts[name] for name in BLOCK_NAMES)
        if not body and html and po_settings.AUTO_PLAIN_TEXT:
            body = html_to_text(html)
        self.subject = self._given_subject if subject is None else subject
        self.body = self._given_body if body is None else body
        self.html = html
        self._attach_body()
        self._attach_inline_images(result.inline_images)

    def _attach_inline_images(self, images: Sequence[InlineImage]) -> None:
        kept = [item for item in self.attachments if not any(item is part for part in self._inline_parts)]
        self._inline_parts = [make_part(i.content, i.mimetype, i.filename, i.headers) for i in images]
        self.attachments = kept + self._inline_parts

    def _attach_body(self) -> None:
        # Undo what an earlier render did (and only that), so rendering again starts afresh.
        if self._html_alternative is not None:
            self.alternatives = [item for item in self.alternatives if item is not self._html_alternative]
            self._html_alternative = None
        if self._html_only:
            self.content_subtype = "plain"
            self._html_only = False
        if self.body and self.html:
            self.attach_alternative(self.html, "text/html")
            self._html_alternative = self.alternatives[-1]
        elif self.html:
            self.body = self.html
            self.content_subtype = "html"
            self._html_only = True

    def send(
        self,
        to: Sequence[str],
        *args: Any,
        priority: str | int | None = None,
        scheduled_time: datetime.datetime | datetime.date | None = None,
        expires_at: datetime.datetime | datetime.date | None = None,
        backend: str | None = None,
        language: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Render and send to ``to``; with ``post_office.EmailBackend`` that queues it with its options.

        ``cc``, ``bcc``, ``reply_to`` and ``from_email`` keyword arguments work
        as in templated-mail; without them the constructor's values are kept.
        """
        # The connection a previous send() cached is not checked: the warning below covers it.
        given = {
            "priority": priority,
            "scheduled_time": scheduled_time,
            "expires_at": expires_at,
            "backend": backend,
            "language": language,
        }
        set_queue_options(self, given, check_connection=False)
        for name in ("cc", "bcc", "reply_to"):
            kwargs.setdefault(name, list(getattr(self, name)))
        for name, value in [("to", to)] + [(name, kwargs[name]) for name in ("cc", "bcc", "reply_to")]:
            if not isinstance(value, (list, tuple)):
                raise InvalidArgument(name, value, "must be a list or tuple of addresses")
        # Lists, as Django's constructor makes them: templated-mail sets them as given.
        kwargs.update({name: list(kwargs[name]) for name in ("cc", "bcc", "reply_to")})
        kwargs.setdefault("from_email", self.from_email)
        super().send(list(to), *args, **kwargs)
        self._warn_if_options_ignored(kwargs.get("using"))

    def _warn_if_options_ignored(self, using: str | None) -> None:
        ignored = ignored_options(options_of(self))
        connection = sending_backend(self, using) if ignored else None
        if ignored and connection is not None and not isinstance(connection, EmailBackend):
            logger.warning(
                "%s was sent at once by %s.%s, which ignores the queue options %s; "
                "only post_office.EmailBackend queues messages with them.",
                type(self).__name__,
                type(connection).__module__,
                type(connection).__qualname__,
                ", ".join(ignored),
            )
