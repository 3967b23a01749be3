"""Template engine choice, rendering, syntax checks and template lookup.

Subjects and plain-text bodies are rendered with autoescaping off (they are not
HTML); HTML bodies follow the engine's autoescape setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Engine, TemplateSyntaxError, engines
from django.template.backends.django import DjangoTemplates
from django.utils import translation

from .conf import settings as po_settings
from .exceptions import TemplateSyntaxInvalid, UnknownTemplate


def get_engine() -> Engine:
    """Return the Django template engine used for every email template."""
    alias = po_settings.TEMPLATE_ENGINE
    if alias:
        try:
            backend = engines[alias]
        except Exception as error:
            raise ImproperlyConfigured(
                f"POST_OFFICE['TEMPLATE_ENGINE'] names {alias!r}, which is not an alias in TEMPLATES: {error}"
            ) from error
    else:
        backend = None
        for candidate in engines.all():
            if isinstance(candidate, DjangoTemplates) and (backend is None or candidate.name == "post_office"):
                backend = candidate
        if backend is None:
            return _fallback_engine()
    if not isinstance(backend, DjangoTemplates):
        raise ImproperlyConfigured(
            f"POST_OFFICE['TEMPLATE_ENGINE'] must name a Django template engine, not {type(backend).__name__}."
        )
    return backend.engine


_FALLBACK: Engine | None = None


def _fallback_engine() -> Engine:
    global _FALLBACK
    if _FALLBACK is None:
        _FALLBACK = Engine()
    return _FALLBACK


class CompiledTemplates:
    """Compiles each distinct source once; shared across one send_many call."""

    def __init__(self) -> None:
        self._engine = get_engine()
        self._cache: dict[str, Any] = {}

    def compile(self, source: str) -> Any:
        compiled = self._cache.get(source)
        if compiled is None:
            compiled = self._cache[source] = self._engine.from_string(source)
        return compiled

    def render(self, source: str, context: Mapping[str, Any], *, autoescape: bool) -> str:
        if not source:
            return ""
        return self.compile(source).render(Context(dict(context), autoescape=autoescape))


@dataclass(frozen=True)
class Rendered:
    subject: str
    message: str
    html_message: str


def render_parts(
    subject: str,
    message: str,
    html_message: str,
    context: Mapping[str, Any],
    *,
    language: str = "",
    compiled: CompiledTemplates | None = None,
) -> Rendered:
    """Render the three parts of an email under the email's language."""
    compiled = compiled or CompiledTemplates()
    html_autoescape = compiled._engine.autoescape
    with translation.override(language or translation.get_language()):
        return Rendered(
            subject=" ".join(compiled.render(subject, context, autoescape=False).splitlines()),
            message=compiled.render(message, context, autoescape=False),
            html_message=compiled.render(html_message, context, autoescape=html_autoescape),
        )


def render_template(template: Any, context: Mapping[str, Any], compiled: CompiledTemplates | None = None) -> Rendered:
    """Render an EmailTemplate (or translation) with a context in its language."""
    return render_parts(
        template.subject,
        template.content,
        template.html_content,
        context,
        language=template.language,
        compiled=compiled,
    )


def validate_template_fields(fields: Mapping[str, str | None]) -> None:
    """Compile each field; raise one error naming every bad field and its line."""
    engine = get_engine()
    errors: dict[str, str] = {}
    for field, source in fields.items():
        if not source:
            continue
        try:
            engine.from_string(source)
        except TemplateSyntaxError as error:
            errors[field] = _describe_syntax_error(error, source)
    if errors:
        raise TemplateSyntaxInvalid(errors)


def _describe_syntax_error(error: TemplateSyntaxError, source: str) -> str:
    info = getattr(error, "template_debug", None)
    if info and info.get("line"):
        return f"line {info['line']}: {error}"
    # Without template debug info, find the line of the failing token.
    token = getattr(error, "token", None)
    lineno = getattr(token, "lineno", None)
    if lineno:
        return f"line {lineno}: {error}"
    return str(error)


def find_templates(names: Iterable[str]) -> dict[tuple[str, str], Any]:
    """Fetch base templates and all their translations for these names in one query.

    Returns ``{(name, language): template}``; the base template has language ''.
    """
    from .models import EmailTemplate

    return {(t.name, t.language): t for t in EmailTemplate.objects.filter(name__in=set(names))}


def select_template(found: Mapping[tuple[str, str], Any], name: str, language: str) -> Any:
    """Pick the template for a name and language, or raise UnknownTemplate."""
    template = found.get((name, language or ""))
    if template is not None:
        return template
    if (name, "") not in found:
        raise UnknownTemplate("template", name, "is not the name of an EmailTemplate")
    raise UnknownTemplate("language", language, f"has no translation of template {name!r}")
