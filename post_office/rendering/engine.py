"""Compiling and rendering email templates: the engine, compiled sources, strict mode, the three parts.

Subjects and plain-text bodies are rendered with autoescaping off (they are not
HTML); HTML bodies follow the engine's autoescape setting. Every part is
rendered under ``translation.override(language)``, so ``{% translate %}``,
dates and numbers follow the email's language, not the sender's.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.template import Context, Engine, Template
from django.template.base import TokenType
from django.templatetags.i18n import BlockTranslateNode
from django.utils import translation

from ..conf import settings as po_settings
from ..conf import template_engine
from ..exceptions import MissingVariables
from ..restricted import RestrictedEngine, database_template_engine, template_data
from ..validation import compile_source
from . import inline
from .inline import InlineImage
from .plaintext import html_to_text

if TYPE_CHECKING:
    from ..models import EmailTemplate


def get_engine() -> Engine:
    """Return the Django template engine used for every email template (``TEMPLATE_ENGINE``)."""
    return template_engine()


_COMPILED_PER_ENGINE = 256
_compiled: weakref.WeakKeyDictionary[Engine, OrderedDict[str, Any]] = weakref.WeakKeyDictionary()
_compiled_lock = threading.Lock()
_compilation_count = 0


def compilations() -> int:
    """How many template sources this process has compiled for rendering (for benchmarks and tests)."""
    return _compilation_count


class CompiledTemplates:
    """Compiles each distinct source once.

    One instance serves one ``send_many`` call (every email from the same
    template reuses one compiled template); behind it, a small per-process
    cache keeps recently used sources compiled between calls and deliveries.
    ``compilations`` counts the sources this instance really compiled.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine if engine is not None else template_engine()
        #: Restricted mode (RESTRICTED_TEMPLATES): the context is checked and copied as data before rendering.
        self.restricted = isinstance(self.engine, RestrictedEngine)
        self._cache: dict[str, Any] = {}
        self.compilations = 0
        #: Inline images read from paths during this call, by path.
        self.images: dict[str, InlineImage] = {}
        self._database: CompiledTemplates | None = None

    def for_database_templates(self) -> CompiledTemplates:
        """What database templates compile with: these sources, or restricted ones in restricted mode."""
        database = self._database
        if database is None:
            # Read once per instance (one call, one delivery): nothing is added per render.
            if po_settings.RESTRICTED_TEMPLATES:
                database = CompiledTemplates(database_template_engine())
                database.images = self.images
            else:
                database = self
            self._database = database
        return database

    def compile(self, source: str) -> Any:
        compiled = self._cache.get(source)
        if compiled is None:
            compiled = self._cache[source] = self._shared(source)
        return compiled

    def _shared(self, source: str) -> Any:
        global _compilation_count
        with _compiled_lock:
            per_engine = _compiled.setdefault(self.engine, OrderedDict())
            compiled = per_engine.get(source)
            if compiled is not None:
                per_engine.move_to_end(source)
                return compiled
        compiled = compile_source(self.engine, source)
        self.compilations += 1
        with _compiled_lock:
            _compilation_count += 1
            per_engine[source] = compiled
            while len(per_engine) > _COMPILED_PER_ENGINE:
                per_engine.popitem(last=False)
        return compiled

    def render(
        self, source: str, context: Mapping[str, Any], *, autoescape: bool, missing: dict[str, None] | None = None
    ) -> str:
        if not source:
            return ""
        compiled = self.compile(source)
        if missing is None:
            return compiled.render(Context(dict(context), autoescape=autoescape))
        recording = _RecordingContext(dict(context), autoescape=autoescape)
        recording._po_missing = missing
        recording._po_probed = _probed_names(compiled)
        return compiled.render(recording)

    def render_in(self, source: str, context: Context, *, autoescape: bool) -> str:
        """Render ``source`` in a context an email's parts share; what one part sets is gone for the next.

        Each part renders in a layer pushed for it (``{% ... as name %}`` and the
        like write there), so sharing the context changes nothing but its cost.
        """
        if not source:
            return ""
        compiled = self.compile(source)
        context.autoescape = autoescape
        if isinstance(context, _RecordingContext):
            context._po_probed = _probed_names(compiled)
        with context.push():
            return str(compiled.render(context))


class _RecordingContext(Context):
    """A context that notes every top-level variable the template asks for and does not find.

    Names bound while rendering (``{% for %}``, ``{% with %}``, ``as`` clauses)
    are in the context when they are used, so only names missing from the
    caller's context are noted.
    """

    _po_missing: dict[str, None]
    _po_probed: frozenset[str]

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            self._po_missing.setdefault(key)
            raise

    def __contains__(self, key: Any) -> bool:
        found = super().__contains__(key)
        # {% blocktranslate %} tests its variables with "in" instead of looking them up.
        if not found and isinstance(key, str) and key in self._po_probed:
            self._po_missing.setdefault(key)
        return found


def recording_context(data: Mapping[str, Any], missing: dict[str, None], compiled: Template) -> Context:
    """A context for ``compiled`` that notes in ``missing`` every top-level variable it lacks (strict mode)."""
    recording = _RecordingContext(dict(data))
    recording._po_missing = missing
    recording._po_probed = _probed_names(compiled)
    return recording


def missing_variables_error(missing: Mapping[str, None], source: str) -> MissingVariables:
    """The strict-mode error naming every missing variable."""
    names = sorted(missing)
    return MissingVariables(
        "context", names, f"{'is' if len(names) == 1 else 'are'} used by {source} but missing from the context"
    )


def _probed_names(compiled: Template) -> frozenset[str]:
    names = getattr(compiled, "_po_probed", None)
    if names is None:
        found: set[str] = set()
        nodes: list[Any] = compiled.nodelist.get_nodes_by_type(BlockTranslateNode)
        for node in nodes:
            for token in itertools.chain(node.singular or (), node.plural or ()):
                if token.token_type == TokenType.VAR:
                    found.add(token.contents.split(".")[0])
        names = frozenset(found)
        setattr(compiled, "_po_probed", names)  # noqa: B010 - remembered on the compiled template
    return names


# -- rendering ---------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The rendered parts of one email."""

    subject: str
    message: str
    html_message: str
    #: Images the HTML references as ``cid:`` (``{% inline_image %}``), to attach as related parts.
    inline_images: tuple[InlineImage, ...] = ()


def render_parts(
    subject: str,
    message: str,
    html_message: str,
    context: Mapping[str, Any],
    *,
    language: str = "",
    compiled: CompiledTemplates | None = None,
    strict: bool | None = None,
    auto_plain_text: bool = False,
    source: str = "the message",
) -> Rendered:
    """Render the three parts of an email under the email's language.

    With ``strict`` (default: ``STRICT_TEMPLATE_VARIABLES``), variables the
    parts use but the context lacks raise :class:`MissingVariables` naming all
    of them. With ``auto_plain_text`` and no plain-text source, the plain text
    is generated from the rendered HTML.
    """
    compiled = compiled or CompiledTemplates()
    if compiled.restricted:
        context = template_data(context)
    if strict is None:
        strict = po_settings.STRICT_TEMPLATE_VARIABLES
    missing: dict[str, None] | None = {} if strict else None
    html_autoescape = compiled.engine.autoescape
    # One context for the three parts, each rendered in a layer of its own (see render_in).
    if missing is None:
        shared = Context(dict(context))
    else:
        shared = _RecordingContext(dict(context))
        shared._po_missing = missing
    switch = bool(language) and language != translation.get_language()
    with translation.override(language) if switch else contextlib.nullcontext():
        rendered_subject = compiled.render_in(subject, shared, autoescape=False)
        rendered_message = compiled.render_in(message, shared, autoescape=False)
        with inline.collecting(compiled.images) as collector:
            rendered_html = compiled.render_in(html_message, shared, autoescape=html_autoescape)
    if missing:
        raise missing_variables_error(missing, source)
    if auto_plain_text and rendered_html.strip() and not (message or "").strip():
        rendered_message = html_to_text(rendered_html)
    return Rendered(
        subject=" ".join(rendered_subject.splitlines()),
        message=rendered_message,
        html_message=rendered_html,
        inline_images=tuple(collector.images.values()) if rendered_html else (),
    )


def render_template(
    template: EmailTemplate,
    context: Mapping[str, Any],
    compiled: CompiledTemplates | None = None,
    *,
    language: str | None = None,
    strict: bool | None = None,
) -> Rendered:
    """Render an EmailTemplate (or translation) with a context.

    ``language`` is the language the email is rendered in (the one asked for,
    even when a fallback template was used); by default the template's own.
    In restricted mode (``RESTRICTED_TEMPLATES``) it compiles with the
    restricted engine and sees the context only as data.
    """
    compiled = (compiled or CompiledTemplates()).for_database_templates()
    return render_parts(
        template.subject,
        template.content,
        template.html_content,
        context,
        language=language or template.language,
        compiled=compiled,
        strict=strict,
        auto_plain_text=po_settings.AUTO_PLAIN_TEXT,
        source=f"template {template.name!r}",
    )
