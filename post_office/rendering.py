"""Email templates: engine, lookup (language fallback, cache), rendering and previews.

Subjects and plain-text bodies are rendered with autoescaping off (they are not
HTML); HTML bodies follow the engine's autoescape setting. Every part is
rendered under ``translation.override(language)``, so ``{% translate %}``,
dates and numbers follow the email's language, not the sender's.

Template lookups fetch a template with all its translations at once (a
*family*) and may be cached in Django's cache (``TEMPLATE_CACHE``); every save
or delete of a template or translation, single or bulk, invalidates its family.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.template import Context, Engine, TemplateSyntaxError, engines
from django.template.backends.django import DjangoTemplates
from django.template.base import TokenType
from django.templatetags.i18n import BlockTranslateNode
from django.utils import translation

from . import inline
from .conf import settings as po_settings
from .exceptions import InvalidArgument, MissingVariables, TemplateSyntaxInvalid, UnknownTemplate
from .inline import InlineImage
from .plaintext import html_to_text

if TYPE_CHECKING:
    from .models import EmailTemplate

logger = logging.getLogger("post_office")

__all__ = [
    "Preview",
    "Rendered",
    "compilations",
    "get_engine",
    "invalidate_templates",
    "language_chain",
    "normalize_language",
    "render_preview",
    "render_template",
]

#: Prefix of the file template names handled by ``post_office.templated``.
FILE_PREFIX = "file:"


# -- the engine --------------------------------------------------------------


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


# -- compiling ---------------------------------------------------------------

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

    def __init__(self) -> None:
        self.engine = get_engine()
        self._cache: dict[str, Any] = {}
        self.compilations = 0
        #: Inline images read from paths during this call, by path.
        self.images: dict[str, InlineImage] = {}

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
        compiled = self.engine.from_string(source)
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


def recording_context(data: Mapping[str, Any], missing: dict[str, None], compiled: Any) -> Context:
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


def _probed_names(compiled: Any) -> frozenset[str]:
    names = getattr(compiled, "_po_probed", None)
    if names is None:
        found: set[str] = set()
        for node in compiled.nodelist.get_nodes_by_type(BlockTranslateNode):
            for token in itertools.chain(node.singular or (), node.plural or ()):
                if token.token_type == TokenType.VAR:
                    found.add(token.contents.split(".")[0])
        names = frozenset(found)
        compiled._po_probed = names
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
    if strict is None:
        strict = po_settings.STRICT_TEMPLATE_VARIABLES
    missing: dict[str, None] | None = {} if strict else None
    html_autoescape = compiled.engine.autoescape
    with translation.override(language or translation.get_language()):
        rendered_subject = compiled.render(subject, context, autoescape=False, missing=missing)
        rendered_message = compiled.render(message, context, autoescape=False, missing=missing)
        with inline.collecting(compiled.images) as collector:
            rendered_html = compiled.render(html_message, context, autoescape=html_autoescape, missing=missing)
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
    template: Any,
    context: Mapping[str, Any],
    compiled: CompiledTemplates | None = None,
    *,
    language: str | None = None,
    strict: bool | None = None,
) -> Rendered:
    """Render an EmailTemplate (or translation) with a context.

    ``language`` is the language the email is rendered in (the one asked for,
    even when a fallback template was used); by default the template's own.
    """
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


def validate_template_fields(fields: Mapping[str, str | None]) -> None:
    """Compile each field; raise one error naming every bad field and its line."""
    engine = get_engine()
    errors: dict[str, str] = {}
    for name, source in fields.items():
        if not source:
            continue
        try:
            engine.from_string(source)
        except TemplateSyntaxError as error:
            errors[name] = _describe_syntax_error(error, source)
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


# -- languages ---------------------------------------------------------------


def normalize_language(code: Any) -> str:
    """``'pt_BR'``, ``'pt-BR'`` and ``'pt-br'`` are all ``'pt-br'``; empty stays ''."""
    if not code:
        return ""
    return translation.to_language(str(code).strip())


def language_chain(language: str) -> list[str]:
    """The languages tried, in order, for a template asked for in ``language``.

    ``'pt-br'`` gives ``['pt-br', 'pt', '']`` ('' is the base template). With
    ``LANGUAGE_FALLBACKS = False`` only the language itself is tried; a dict in
    ``LANGUAGE_FALLBACKS`` gives explicit chains for the languages it names.
    """
    code = normalize_language(language)
    if not code:
        return [""]
    setting = po_settings.LANGUAGE_FALLBACKS
    if setting is False:
        return [code]
    chain = [code]
    explicit = None
    if isinstance(setting, dict):
        explicit = {normalize_language(key): value for key, value in setting.items()}.get(code)
    if explicit is not None:
        if isinstance(explicit, str):
            explicit = [explicit]
        if not isinstance(explicit, (list, tuple)) or not all(isinstance(item, str) for item in explicit):
            raise ImproperlyConfigured(
                f"POST_OFFICE['LANGUAGE_FALLBACKS'][{code!r}] must be a list of language codes, not {explicit!r}."
            )
        chain.extend(normalize_language(item) for item in explicit)
    else:
        parts = code.split("-")
        chain.extend("-".join(parts[:length]) for length in range(len(parts) - 1, 0, -1))
    chain.append("")
    return list(dict.fromkeys(chain))


# -- lookup and cache --------------------------------------------------------

#: Bumped whenever the cached value's shape changes, so old entries are never read.
CACHE_KEY_VERSION = 1
Family = dict[str, "EmailTemplate"]


def cache_key(name: str) -> str:
    """The cache key of a template family: its name hashed, so no two names can share a key."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"post_office:template:v{CACHE_KEY_VERSION}:{digest}"


def template_cache() -> BaseCache | None:
    """The cache used for template lookups, or None when lookups are not cached."""
    setting = po_settings.TEMPLATE_CACHE
    if setting is False:
        return None
    if isinstance(setting, str):
        try:
            return caches[setting]
        except Exception as error:
            raise ImproperlyConfigured(
                f"POST_OFFICE['TEMPLATE_CACHE'] names {setting!r}, which is not an alias in CACHES: {error}"
            ) from error
    from django.conf import settings

    if "post_office" in settings.CACHES:
        return caches["post_office"]
    cache = caches["default"]
    # A per-process cache cannot be invalidated from the process where a template
    # is edited: other processes would send the old text until it expires.
    if isinstance(cache, (LocMemCache, DummyCache)):
        return None
    return cache


def _pack(family: Family) -> dict[str, Any]:
    from .models import EmailTemplate

    names = [f.attname for f in EmailTemplate._meta.concrete_fields]
    return {"fields": names, "rows": [[getattr(t, name) for name in names] for t in family.values()]}


def _unpack(value: Any) -> Family | None:
    from .models import EmailTemplate

    names = [f.attname for f in EmailTemplate._meta.concrete_fields]
    if not isinstance(value, dict) or value.get("fields") != names:
        return None
    db = router.db_for_read(EmailTemplate)
    family: Family = {}
    for row in value["rows"]:
        template = EmailTemplate.from_db(db, names, row)
        family[normalize_language(template.language)] = template
    return family


def get_families(names: Iterable[str]) -> dict[str, Family]:
    """Each name's template family ``{language: template}`` ('' is the base), in at most one query."""
    from .models import EmailTemplate

    wanted = {name for name in names if isinstance(name, str) and name}
    families: dict[str, Family] = {}
    cache = template_cache() if wanted else None
    if cache is not None:
        keys = {cache_key(name): name for name in wanted}
        try:
            hits = cache.get_many(list(keys))
        except Exception:  # noqa: BLE001 - an unreachable cache must not stop email
            logger.warning(
                "post_office: template cache unavailable; reading templates from the database", exc_info=True
            )
            hits = {}
        for key, value in hits.items():
            family = _unpack(value)
            if family is not None:
                families[keys[key]] = family
    missing = wanted - set(families)
    if missing:
        fetched: dict[str, Family] = {}
        for template in EmailTemplate.objects.filter(name__in=missing):
            fetched.setdefault(template.name, {})[normalize_language(template.language)] = template
        # Names are matched exactly (a case-insensitive collation may return others).
        fetched = {name: family for name, family in fetched.items() if name in missing}
        families.update(fetched)
        if cache is not None and fetched:
            try:
                cache.set_many(
                    {cache_key(name): _pack(family) for name, family in fetched.items()},
                    timeout=po_settings.TEMPLATE_CACHE_TIMEOUT,
                )
            except Exception:  # noqa: BLE001
                logger.warning("post_office: could not store templates in the cache", exc_info=True)
    return families


def invalidate_templates(names: Iterable[str]) -> None:
    """Drop the cached families of these template names, now and when the transaction commits.

    The second deletion covers a process that reads the old rows (and caches
    them) between this write and its commit.
    """
    cache = template_cache()
    keys = sorted({cache_key(name) for name in names if name})
    if cache is None or not keys:
        return

    def delete() -> None:
        try:
            cache.delete_many(keys)
        except Exception:  # noqa: BLE001
            logger.warning("post_office: could not invalidate cached templates %s", keys, exc_info=True)

    delete()
    from .models import EmailTemplate

    using = router.db_for_write(EmailTemplate)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(delete, using=using)


def choose_template(family: Family | None, name: str, language: str) -> EmailTemplate:
    """Pick the first template of ``language_chain(language)`` in the family, or raise UnknownTemplate."""
    if not family or "" not in family:
        raise UnknownTemplate("template", name, "is not the name of an EmailTemplate")
    chain = language_chain(language)
    for code in chain:
        if code in family:
            return family[code]
    tried = ", ".join(repr(code) for code in chain)
    raise UnknownTemplate("language", language, f"has no translation of template {name!r} (tried {tried})")


class TemplateLookup:
    """Template families and compiled sources shared by one call (send, send_many, a preview)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.families = get_families(names)
        self.compiled = CompiledTemplates()

    def family(self, name: str) -> Family | None:
        if name not in self.families:
            self.families.update(get_families([name]))
        return self.families.get(name)

    def resolve(self, template: Any, language: str = "") -> EmailTemplate:
        """The template to render for a name or EmailTemplate in a language (with fallback)."""
        from .models import EmailTemplate

        code = normalize_language(language)
        if isinstance(template, EmailTemplate):
            if not code or normalize_language(template.language) == code:
                return template
            # Translations carry their base template's name.
            return choose_template(self.family(template.name), template.name, code)
        if not isinstance(template, str) or not template:
            raise InvalidArgument("template", template, "must be a template name or an EmailTemplate")
        return choose_template(self.family(template), template, code)


# django-post_office-era helpers (post_office.utils uses them).


def find_templates(names: Iterable[str]) -> dict[tuple[str, str], Any]:
    """Fetch base templates and all their translations for these names.

    Returns ``{(name, language): template}``; the base template has language ''.
    """
    return {
        (name, language): template
        for name, family in get_families(names).items()
        for language, template in family.items()
    }


def select_template(found: Mapping[tuple[str, str], Any], name: str, language: str) -> Any:
    """Pick the template for a name and language (with fallback), or raise UnknownTemplate."""
    family = {language_code: template for (found_name, language_code), template in found.items() if found_name == name}
    return choose_template(family, name, language)


# -- previews ----------------------------------------------------------------


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
    template: Any = field(default=None, compare=False)

    def html_with_data_uris(self) -> str:
        """The HTML with each ``cid:`` reference replaced by the image's ``data:`` URI (for a browser)."""
        html = self.html_message
        for image in self.inline_images:
            html = html.replace(f"cid:{image.cid}", image.data_uri)
        return html


def render_preview(
    template: Any, context: Mapping[str, Any] | None = None, language: str = "", *, strict: bool | None = None
) -> Preview:
    """Render a template as it would be sent, and return it; nothing is queued or stored.

    ``template`` is an EmailTemplate, a template name, or a file template name
    (``'file:...'``, when ``post_office.templated`` provides file templates).
    The language falls back like ``mail.send`` does.
    """
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise InvalidArgument("context", context, "must be a dict")
    if isinstance(template, str) and template.startswith(FILE_PREFIX):
        return _preview_file(template, context, language)
    lookup = TemplateLookup([template] if isinstance(template, str) else [])
    chosen = lookup.resolve(template, language)
    rendered = render_template(
        chosen, context, lookup.compiled, language=normalize_language(language) or chosen.language, strict=strict
    )
    return Preview(
        subject=rendered.subject,
        message=rendered.message,
        html_message=rendered.html_message,
        inline_images=rendered.inline_images,
        template_language=chosen.language,
        template=chosen,
    )


def _preview_file(name: str, context: Mapping[str, Any], language: str) -> Preview:
    try:
        module = importlib.import_module("post_office.templated")
    except ModuleNotFoundError as error:
        if error.name != "post_office.templated":
            raise
        module = None
    render_file = getattr(module, "render_file_template", None)
    if render_file is None:
        raise UnknownTemplate("template", name, "is a file template, but file templates are not available")
    with inline.collecting() as collector:
        result = render_file(name, context, language)
    if isinstance(result, Mapping):
        result = _AttributeView(result)
    images = tuple(getattr(result, "inline_images", None) or collector.images.values())
    return Preview(
        subject=str(getattr(result, "subject", "") or ""),
        message=str(getattr(result, "message", "") or ""),
        html_message=str(getattr(result, "html_message", "") or ""),
        inline_images=images,
        template_language=str(getattr(result, "language", "") or ""),
    )


class _AttributeView:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        return self._values.get(name)
