"""File templates in django-templated-mail's block format (``file:`` names).

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

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.template import Context, Engine, TemplateDoesNotExist, TemplateSyntaxError
from django.template.base import Template
from django.template.context import make_context
from django.template.loader_tags import BLOCK_CONTEXT_KEY, BlockContext, BlockNode, ExtendsNode
from django.utils import translation
from templated_mail.mail import BaseEmailMessage

from ..conf import settings as po_settings
from ..conf import template_engine
from ..exceptions import InvalidArgument, TemplateSyntaxInvalid, UnknownTemplate
from ..languages import check_language, language_chain
from ..validation import FILE_PREFIX, syntax_error_line
from . import inline
from .engine import Rendered, missing_variables_error, recording_context
from .inline import InlineImage
from .plaintext import html_to_text

__all__ = [
    "BLOCK_NAMES",
    "RenderedFile",
    "file_template_candidates",
    "find_file_template",
    "render_blocks",
    "render_file_template",
    "template_context",
]

#: The blocks of django-templated-mail's format, in the order of Rendered's fields.
BLOCK_NAMES = ("subject", "text_body", "html_body")


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
    return [(f"{root}.{code}{extension}" if code else path, code) for code in language_chain(language or "")]


def template_context(context: Mapping[str, Any] | None = None, request: HttpRequest | None = None) -> dict[str, Any]:
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
    result = render_blocks(name, template_context(context), language=language, required=True)
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
class BlockResult:
    #: Block name -> rendered text, or None when the template does not define the block.
    parts: dict[str, str | None]
    inline_images: tuple[InlineImage, ...]
    #: The language of the file used.
    language: str


def render_blocks(
    name: str, data: dict[str, Any], *, language: str, request: HttpRequest | None = None, required: bool
) -> BlockResult:
    """Render the three blocks of the file chosen for ``language`` (``required``: refuse a file without them)."""
    engine = template_engine()
    template, path, file_language = _load(engine, file_template_candidates(name, language), name)
    # Strict mode (STRICT_TEMPLATE_VARIABLES) notes the variables the blocks use and
    # the context lacks; a message rendered for a request keeps Django's RequestContext.
    missing: dict[str, None] | None = {} if po_settings.STRICT_TEMPLATE_VARIABLES and request is None else None
    with translation.override(language or translation.get_language()):
        if missing is None:
            context = make_context(data, request=request)
        else:
            context = recording_context(data, missing, template)
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
        raise missing_variables_error(missing, path)
    images = tuple(collector.images.values()) if parts["html_body"] else ()
    return BlockResult(parts=parts, inline_images=images, language=file_language)


def find_file_template(name: str, language: str = "") -> tuple[str, str]:
    """The path and language of the file ``name`` resolves to for ``language``; raise if none compiles.

    What ``render_on_delivery`` checks when the email is queued: the file
    exists (for the language chain) and compiles.
    """
    _template, path, file_language = _load(
        template_engine(), file_template_candidates(name, check_language(language)), name
    )
    return path, file_language


def _load(engine: Engine, candidates: Sequence[tuple[str, str]], name: str) -> tuple[Template, str, str]:
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
    line = syntax_error_line(error)
    where = f"{path}, line {line}" if line else path
    return TemplateSyntaxInvalid({"template": f"{where}: {error}"})
