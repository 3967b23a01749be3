"""``{% load post_office %}``: the ``inline_image`` tag for HTML email templates."""

from __future__ import annotations

from typing import Any

from django import template

from post_office.rendering.inline import embed

register = template.Library()


@register.simple_tag
def inline_image(source: Any) -> str:
    """Attach an image to the email and return its ``cid:`` URL.

    ``source`` is a static file path (``"img/logo.png"``), a path in the default
    storage, or a file object from the context::

        <img src="{% inline_image 'img/logo.png' %}" alt="Logo">
    """
    return embed(source)
