"""Finding database templates: a template with all its translations (a family), cached, and the fallback.

Template lookups fetch a template with all its translations at once and may be
cached in Django's cache (``TEMPLATE_CACHE``); every save or delete of a
template or translation, single or bulk, invalidates its family
(``post_office.models``, where every write goes through).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import router

from ..conf import settings as po_settings
from ..conf import template_cache
from ..exceptions import InvalidArgument, UnknownTemplate
from ..languages import language_chain, normalize_language
from ..models import EmailTemplate, template_cache_key
from .engine import CompiledTemplates

logger = logging.getLogger("post_office")

cache_key = template_cache_key
Family = dict[str, EmailTemplate]


class MissingEmailTemplate(UnknownTemplate, EmailTemplate.DoesNotExist):
    """No database template of that name (or translation): also ``EmailTemplate.DoesNotExist``, as it was."""


def _pack(family: Family) -> dict[str, Any]:
    names = [f.attname for f in EmailTemplate._meta.concrete_fields]
    return {"fields": names, "rows": [[getattr(t, name) for name in names] for t in family.values()]}


def _unpack(value: Any) -> Family | None:
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


def choose_template(family: Family | None, name: str, language: str) -> EmailTemplate:
    """Pick the first template of ``language_chain(language)`` in the family, or raise UnknownTemplate."""
    if not family or "" not in family:
        raise MissingEmailTemplate("template", name, "is not the name of an EmailTemplate")
    chain = language_chain(language)
    for code in chain:
        if code in family:
            return family[code]
    tried = ", ".join(repr(code) for code in chain)
    raise MissingEmailTemplate("language", language, f"has no translation of template {name!r} (tried {tried})")


class TemplateLookup:
    """Template families and compiled sources shared by one call (send, send_many, a preview)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.families = get_families(names)

    @functools.cached_property
    def compiled(self) -> CompiledTemplates:
        """The call's compiled sources: made when a part is first rendered (``mail.send`` often renders none)."""
        return CompiledTemplates()

    def family(self, name: str) -> Family | None:
        if name not in self.families:
            self.families.update(get_families([name]))
        return self.families.get(name)

    def resolve(self, template: str | EmailTemplate, language: str = "") -> EmailTemplate:
        """The template to render for a name or EmailTemplate in a language (with fallback)."""
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


def find_templates(names: Iterable[str]) -> dict[tuple[str, str], EmailTemplate]:
    """Fetch base templates and all their translations for these names.

    Returns ``{(name, language): template}``; the base template has language ''.
    """
    return {
        (name, language): template
        for name, family in get_families(names).items()
        for language, template in family.items()
    }


def select_template(found: Mapping[tuple[str, str], EmailTemplate], name: str, language: str) -> EmailTemplate:
    """Pick the template for a name and language (with fallback), or raise UnknownTemplate."""
    family = {language_code: template for (found_name, language_code), template in found.items() if found_name == name}
    return choose_template(family, name, language)
