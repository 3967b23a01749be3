"""django-post_office's template backend path, kept for existing ``TEMPLATES`` settings.

``{"BACKEND": "post_office.template.backends.post_office.PostOfficeTemplates"}``
gets the alias ``'post_office'``, which ``POST_OFFICE['TEMPLATE_ENGINE']`` may
name. It is Django's template engine with the ``post_office`` tag library
(``inline_image``) built in, so email templates need no ``{% load %}``.
"""

from __future__ import annotations

from typing import Any

from django.template.backends.django import DjangoTemplates

LIBRARY = "post_office.templatetags.post_office"


class PostOfficeTemplates(DjangoTemplates):
    """A DjangoTemplates engine whose templates can use ``{% inline_image %}`` without loading it."""

    def __init__(self, params: dict[str, Any]) -> None:
        params = params.copy()
        options = dict(params.get("OPTIONS") or {})
        builtins = list(options.get("builtins") or [])
        if LIBRARY not in builtins:
            builtins.append(LIBRARY)
        options["builtins"] = builtins
        params["OPTIONS"] = options
        super().__init__(params)
