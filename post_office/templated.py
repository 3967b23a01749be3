"""File templates in django-templated-mail's block format, and its message class with queue options.

A file template is a Django template with the blocks ``subject``,
``text_body`` and ``html_body``. ``mail.send(template='file:email/welcome.html')``
renders one: every template name that starts with ``file:`` is looked up by the
template loaders of the ``TEMPLATE_ENGINE``, every other name is a database
template. For ``language='pt-br'`` the files ``email/welcome.pt-br.html``,
``email/welcome.pt.html`` and ``email/welcome.html`` are tried in that order.

Blocks are rendered by name through Django's block context, so ``{% extends %}``,
overridden nested blocks and ``{{ block.super }}`` work as they do in pages
(django-templated-mail 1.1.1 looks only at the top level of the file and loses
every block of a template that extends another).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.template import Context, TemplateDoesNotExist, TemplateSyntaxError
from django.template.base import Template
from django.template.context import make_context
from django.template.loader_tags import BLOCK_CONTEXT_KEY, BlockContext, BlockNode, ExtendsNode
from django.utils import translation
from templated_mail.mail import BaseEmailMessage

from . import inline, rendering
from .backends import (
    QUEUE_OPTIONS_ATTRIBUTE,
    EmailBackend,
    check_language,
    ignored_options,
    sending_backend,
    set_queue_options,
)
from .conf import settings as po_settings
from .exceptions import InvalidArgument, TemplateSyntaxInvalid, UnknownTemplate
from .inline import InlineImage
from .mime import make_part
from .plaintext import html_to_text
from .rendering import Rendered, get_engine

__all__ = [
    "FILE_PREFIX",
    "BLOCK_NAMES",
    "TemplatedEmailMessage",
    "check_database_template_name",
    "RenderedFile",
    "file_template_candidates",
    "is_file_template",
    "render_file_template",
    "template_context",
]

logger = logging.getLogger(__name__)

#: Template names starting with this are file templates; all others are database templates.
FILE_PREFIX = rendering.FILE_PREFIX
#: The blocks of django-templated-mail's format, in the order of Rendered's fields.
BLOCK_NAMES = ("subject", "text_body", "html_body")


def is_file_template(name: Any) -> bool:
    """True when ``name`` names a file template (``'file:email/welcome.html'``)."""
    return isinstance(name, str) and name.startswith(FILE_PREFIX)


def check_database_template_name(name: Any) -> None:
    """Refuse an EmailTemplate name starting with ``file:`` (ValidationError on ``name``)."""
    if is_file_template(name):
        raise ValidationError(
            {
                "name": [
                    ValidationError(
                        "%(name)r starts with %(prefix)r, which marks file templates; "
                        "a database template needs another name.",
                        code="reserved_name",
                        params={"name": name, "prefix": FILE_PREFIX},
                    )
                ]
            }
        )


def _template_path(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidArgument("template", name, "must be a template name")
    path = name[len(FILE_PREFIX) :] if name.startswith(FILE_PREFIX) else name
    if not path.strip():
        raise InvalidArgument("template", name, "names no file: put the template's path after 'file:'")
    return path


def file_template_candidates(name: str, language: str = "") -> list[tuple[str, str]]:
    """The files tried for a file template, best first, as ``(path, language of the file)``.

    ``('file:email/welcome.html', 'pt-br')`` gives ``email/welcome.pt-br.html``,
    ``email/welcome.pt.html`` and ``email/welcome.html`` (language ''): the
    language chain of database templates (``LANGUAGE_FALLBACKS``), with the
    language code put before the file's extension.
    """
    path = _template_path(name)
    root, extension = posixpath.splitext(path)
    return [(f"{root}.{code}{extension}" if code else path, code) for code in rendering.language_chain(language or "")]


def template_context(context: Mapping[str, Any] | None = None, request: Any = None) -> dict[str, Any]:
    """The context a file template sees: ``context`` plus templated-mail's conventions.

    ``domain``, ``protocol``, ``site_name`` and ``user`` are filled in exactly as
    django-templated-mail's ``BaseEmailMessage.get_context_data`` does (from
    ``settings.DOMAIN`` and ``settings.SITE_NAME``, the request's site, and
    ``'http'``) unless the context gives them.
    """
    message = BaseEmailMessage(request=request, context=dict(context or {}))
    data = message.get_context_data()
    if data.get("view") is message:
        # ContextMixin adds the message itself as "view"; a rendered email has no view.
        del data["view"]
    return data


@dataclass(frozen=True)
class RenderedFile(Rendered):
    """A rendered file template; ``language`` is the language of the file used ('' for the base file)."""

    language: str = ""


def render_file_template(name: str, context: Mapping[str, Any] | None = None, language: str = "") -> RenderedFile:
    """Render a file template (``'file:email/welcome.html'`` or ``'email/welcome.html'``).

    The file for ``language`` is chosen as :func:`file_template_candidates`
    describes and rendered with ``context`` plus templated-mail's conventions,
    under ``translation.override(language)``. The subject is one line and, like
    the plain-text body, not autoescaped; the HTML body follows the engine's
    autoescape setting; both bodies are stripped of surrounding whitespace.
    Images of ``{% inline_image %}`` in the HTML are returned in
    ``inline_images``, and without a ``text_body`` the plain text is made from
    the HTML (unless ``AUTO_PLAIN_TEXT`` is off). Raises
    :class:`~post_office.exceptions.UnknownTemplate` when no file is found and
    :class:`~post_office.exceptions.TemplateSyntaxInvalid` when the file does
    not compile or lacks the ``subject`` block or both body blocks.
    """
    if context is not None and not isinstance(context, Mapping):
        raise InvalidArgument("context", context, "must be a dict")
    language = check_language(language)
    result = _render(name, template_context(context), language=language, required=True)
    text, html = result.parts["text_body"] or "", result.parts["html_body"] or ""
    if not text and html and po_settings.AUTO_PLAIN_TEXT:
        text = html_to_text(html)
    return RenderedFile(
        subject=result.parts["subject"] or "",
        message=text,
        html_message=html,
        inline_images=result.inline_images,
        language=result.language,
    )


@dataclass(frozen=True)
class _Result:
    #: Block name -> rendered text, or None when the template does not define the block.
    parts: dict[str, str | None]
    inline_images: tuple[InlineImage, ...]
    #: The language of the file used.
    language: str


def _render(name: str, data: dict[str, Any], *, language: str, request: Any = None, required: bool) -> _Result:
    """Render the three blocks of the file chosen for ``language``."""
    engine = get_engine()
    template, path, file_language = _load(engine, file_template_candidates(name, language), name)
    # Strict mode (STRICT_TEMPLATE_VARIABLES) notes the variables the blocks use and
    # the context lacks; a message rendered for a request keeps Django's RequestContext.
    missing: dict[str, None] | None = {} if po_settings.STRICT_TEMPLATE_VARIABLES and request is None else None
    with translation.override(language or translation.get_language()):
        if missing is None:
            context = make_context(data, request=request)
        else:
            context = rendering.recording_context(data, missing, template)
        with context.render_context.push_state(template), context.bind_template(template):
            context.template_name = template.name
            blocks = _block_context(template, path, context)
            if required:
                _check_blocks(blocks, path)
            context.render_context[BLOCK_CONTEXT_KEY] = blocks
            parts = {
                block_name: _render_block(blocks, block_name, context, engine.autoescape, path)
                for block_name in ("subject", "text_body")
            }
            # {% inline_image %} in the HTML: the images to attach as related parts.
            with inline.collecting() as collector:
                parts["html_body"] = _render_block(blocks, "html_body", context, engine.autoescape, path)
    if missing:
        raise rendering.missing_variables_error(missing, path)
    images = tuple(collector.images.values()) if parts["html_body"] else ()
    return _Result(parts=parts, inline_images=images, language=file_language)


def find_file_template(name: str, language: str = "") -> tuple[str, str]:
    """The path and language of the file ``name`` resolves to for ``language``; raise if none compiles.

    What ``render_on_delivery`` checks when the email is queued: the file
    exists (for the language chain) and compiles.
    """
    _template, path, file_language = _load(get_engine(), file_template_candidates(name, check_language(language)), name)
    return path, file_language


def _load(engine: Any, candidates: Sequence[tuple[str, str]], name: str) -> tuple[Template, str, str]:
    for path, language in candidates:
        try:
            return engine.get_template(path), path, language
        except TemplateDoesNotExist:
            continue
        except TemplateSyntaxError as error:
            raise _syntax_invalid(path, error) from error
    tried = ", ".join(repr(path) for path, _language in candidates)
    raise UnknownTemplate("template", name, f"was not found by the template loaders (tried {tried})")


def _block_context(template: Template, path: str, context: Context) -> BlockContext:
    """Collect the blocks of the template and of every template it extends, as ``{% extends %}`` does.

    The most derived definition of each block ends up on top, and the ones it
    overrides below it, for ``{{ block.super }}``.
    """
    blocks = BlockContext()
    current, current_path = template, path
    while True:
        extends = next((node for node in current.nodelist if isinstance(node, ExtendsNode)), None)
        if extends is None:
            blocks.add_blocks(_blocks_of(current))
            return blocks
        blocks.add_blocks(extends.blocks)
        parent = str(extends.parent_name.token)
        try:
            current = extends.get_parent(context)
        except TemplateDoesNotExist as error:
            raise UnknownTemplate(
                "template", current_path, f"extends {parent}, which the template loaders did not find"
            ) from error
        except TemplateSyntaxError as error:
            raise _syntax_invalid(f"{parent} (extended by {current_path})", error) from error
        current_path = str(current.origin.template_name or parent)


def _blocks_of(template: Template) -> dict[str, BlockNode]:
    nodes: list[Any] = template.nodelist.get_nodes_by_type(BlockNode)
    return {node.name: node for node in nodes}


def _check_blocks(blocks: BlockContext, path: str) -> None:
    missing = []
    if blocks.get_block("subject") is None:
        missing.append("{% block subject %}")
    if blocks.get_block("text_body") is None and blocks.get_block("html_body") is None:
        missing.append("{% block text_body %} or {% block html_body %}")
    if missing:
        raise TemplateSyntaxInvalid(
            {
                "template": f"{path}: has no {' and no '.join(missing)}; "
                "a file template needs a subject block and a text_body or html_body block"
            }
        )


def _render_block(blocks: BlockContext, name: str, context: Context, html_autoescape: bool, path: str) -> str | None:
    block = blocks.get_block(name)
    if block is None:
        return None
    # Subjects and plain text are not HTML: never autoescape them.
    context.autoescape = html_autoescape if name == "html_body" else False
    try:
        text = block.render(context)
    except TemplateDoesNotExist as error:
        raise UnknownTemplate("template", path, f"{{% block {name} %}} uses {error}, which was not found") from error
    if name == "subject":
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text.strip()


def _syntax_invalid(path: str, error: TemplateSyntaxError) -> TemplateSyntaxInvalid:
    info = getattr(error, "template_debug", None)
    line = info.get("line") if info else getattr(getattr(error, "token", None), "lineno", None)
    where = f"{path}, line {line}" if line else path
    return TemplateSyntaxInvalid({"template": f"{where}: {error}"})


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
    scheduled_time: Any = None
    expires_at: Any = None
    backend: str | None = None
    language: str | None = None

    def __init__(
        self,
        request: Any = None,
        context: Mapping[str, Any] | None = None,
        template_name: str | None = None,
        *args: Any,
        priority: str | int | None = None,
        scheduled_time: Any = None,
        expires_at: Any = None,
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
        return (getattr(self, QUEUE_OPTIONS_ATTRIBUTE, None) or {}).get("language") or ""

    def render(self) -> None:
        """Render subject, body and HTML from ``template_name`` (again, from scratch, when called again)."""
        if not self.template_name:
            raise InvalidArgument("template_name", self.template_name, "is not set on this message")
        result = _render(
            self.template_name,
            self.get_context_data(),
            language=check_language(self._queue_language()),
            request=self.request,
            required=False,
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
        scheduled_time: Any = None,
        expires_at: Any = None,
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
        kwargs.setdefault("from_email", self.from_email)
        super().send(to, *args, **kwargs)
        self._warn_if_options_ignored(kwargs.get("using"))

    def _warn_if_options_ignored(self, using: str | None) -> None:
        ignored = ignored_options(getattr(self, QUEUE_OPTIONS_ATTRIBUTE, None) or {})
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
