"""django-post_office's template backend path, kept for existing ``TEMPLATES`` settings.

``{"BACKEND": "post_office.template.backends.post_office.PostOfficeTemplates"}``
gets the alias ``'post_office'``, which ``POST_OFFICE['TEMPLATE_ENGINE']`` may
name. It is Django's template engine with the ``post_office`` tag library
(``inline_image``) built in, so email templates need no ``{% load %}``.

Its templates keep the images ``{% inline_image %}`` used in their last
render: ``template.attach_related(message)`` attaches them to a Django
``EmailMultiAlternatives`` as inline parts (``Content-ID``), as in
django-post_office::

    template = get_template("email.html", using="post_office")
    html = template.render(context)
    message.attach_alternative(html, "text/html")
    template.attach_related(message)
"""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.backends.django import DjangoTemplates, reraise
from django.template.backends.django import Template as DjangoTemplate

from post_office.message.parts import make_part
from post_office.rendering.inline import InlineImage, collecting

LIBRARY = "post_office.templatetags.post_office"


class Template(DjangoTemplate):
    """A Django template that remembers the inline images of its last render."""

    def __init__(self, template: Any, backend: Any) -> None:
        super().__init__(template, backend)
        #: The images ``{% inline_image %}`` attached during the last render, in order of first use.
        self.inline_images: list[InlineImage] = []

    def render(self, context: Any = None, request: Any = None) -> Any:
        # The project's own template file: an absolute path to an image may be used, as in django-post_office.
        with collecting(absolute_paths=True) as collector:
            rendered = super().render(context, request)
        self.inline_images = list(collector.images.values())
        return rendered

    def related_parts(self) -> list[Any]:
        """The last render's images as MIME parts (``Content-ID``, ``Content-Disposition: inline``)."""
        return [make_part(image.content, image.mimetype, image.filename, image.headers) for image in self.inline_images]

    def attach_related(self, email_message: EmailMultiAlternatives) -> None:
        """Attach the last render's images to ``email_message``, which the HTML refers to by ``cid:``."""
        if not isinstance(email_message, EmailMultiAlternatives):
            raise TypeError(f"attach_related() needs an EmailMultiAlternatives, not {type(email_message).__name__}")
        if self.inline_images and hasattr(email_message, "mixed_subtype"):
            # Django before 6.0 builds multipart/mixed; images next to the HTML belong in multipart/related.
            email_message.mixed_subtype = "related"
        for part in self.related_parts():
            email_message.attach(part)


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

    def from_string(self, template_code: str) -> Template:
        return Template(self.engine.from_string(template_code), self)

    def get_template(self, template_name: str) -> Template:
        try:
            return Template(self.engine.get_template(template_name), self)
        except TemplateDoesNotExist as exc:
            reraise(exc, self)
