"""``render_to_string`` that also returns the inline images a template used (django-post_office's helper)."""

from __future__ import annotations

from typing import Any

from django.template.loader import get_template, select_template

from .backends.post_office import Template

__all__ = ["render_to_string"]


def render_to_string(template_name: Any, context: Any = None, request: Any = None, using: str | None = None) -> Any:
    """Render a template; return ``(html, images)`` when the ``post_office`` engine rendered it, else the text.

    ``template_name`` is a name or a list of names (the first found is used).
    ``images`` are MIME parts (``Content-ID``, ``Content-Disposition: inline``)
    for ``message.attach()``, one per image ``{% inline_image %}`` used.
    """
    if isinstance(template_name, (list, tuple)):
        template = select_template(template_name, using=using)
    else:
        template = get_template(template_name, using=using)
    rendered = template.render(context, request)
    if isinstance(template, Template):
        return rendered, template.related_parts()
    return rendered
