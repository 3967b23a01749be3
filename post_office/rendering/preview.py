"""Previews: a template rendered exactly as it would be sent, with nothing queued or stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import InvalidArgument
from ..languages import normalize_language
from ..models import EmailTemplate
from ..validation import is_file_template
from .engine import Rendered, render_template
from .files import render_file_template
from .inline import InlineImage
from .lookup import TemplateLookup


@dataclass(frozen=True)
class Preview:
    """A rendered template, as it would be sent, without anything queued or stored."""

    subject: str
    message: str
    html_message: str
    inline_images: tuple[InlineImage, ...] = ()
    #: The language of the template or translation that was used ('' for the base template).
    template_language: str = ""
    #: The EmailTemplate used, or None for a file template.
    template: EmailTemplate | None = field(default=None, compare=False)

    def html_with_data_uris(self) -> str:
        """The HTML with each ``cid:`` reference replaced by the image's ``data:`` URI (for a browser)."""
        html = self.html_message
        for image in self.inline_images:
            html = html.replace(f"cid:{image.cid}", image.data_uri)
        return html


def render_preview(
    template: str | EmailTemplate,
    context: Mapping[str, Any] | None = None,
    language: str = "",
    *,
    strict: bool | None = None,
) -> Preview:
    """Render a template as it would be sent, and return it; nothing is queued or stored.

    ``template`` is an EmailTemplate, a template name, or a file template name
    (``'file:...'``).
    The language falls back like ``mail.send`` does.
    """
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise InvalidArgument("context", context, "must be a dict")
    if isinstance(template, str) and is_file_template(template):
        from_file = render_file_template(template, context, language)
        return _preview(from_file, from_file.language)
    lookup = TemplateLookup([template] if isinstance(template, str) else [])
    chosen = lookup.resolve(template, language)
    rendered = render_template(
        chosen, context, lookup.compiled, language=normalize_language(language) or chosen.language, strict=strict
    )
    return _preview(rendered, chosen.language, chosen)


def _preview(rendered: Rendered, template_language: str, template: EmailTemplate | None = None) -> Preview:
    return Preview(
        subject=rendered.subject,
        message=rendered.message,
        html_message=rendered.html_message,
        inline_images=rendered.inline_images,
        template_language=template_language,
        template=template,
    )
