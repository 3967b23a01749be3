"""Language codes: one spelling, the codes the project offers, and the fallback chain.

Every entry point (``mail.send``, queue options, file templates, the template
files of ``mail_templates``, ``EmailTemplate.clean``) checks codes here.

A code the project does not list is accepted the way Django's
``get_supported_language_variant`` accepts it (``'de-at'`` when LANGUAGES has
``'de'``, ``'pt'`` when it has only ``'pt-br'``) and stands for the listed code
Django picks: that code is what is stored and looked up, so ``Email.language``
and a translation's language are always codes of settings.LANGUAGES.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import translation

from .conf import settings as po_settings
from .exceptions import InvalidArgument


def normalize_language(code: Any) -> str:
    """``'pt_BR'``, ``'pt-BR'`` and ``'pt-br'`` are all ``'pt-br'``; empty stays ''."""
    if not code:
        return ""
    return translation.to_language(str(code).strip())


_CODES: tuple[Any, frozenset[str]] = (None, frozenset())


def language_codes() -> frozenset[str]:
    """settings.LANGUAGES' codes in their one spelling, worked out once per value of the setting."""
    global _CODES
    languages = settings.LANGUAGES
    if _CODES[0] is not languages:
        _CODES = (languages, frozenset(normalize_language(code) for code, _name in languages))
    return _CODES[1]


def supported_language(code: str) -> str | None:
    """The code of settings.LANGUAGES that ``code`` stands for, in its one spelling, or None.

    A listed code is itself ('pt_BR' -> 'pt-br'). Any other goes through
    ``django.utils.translation.get_supported_language_variant``, as Django's
    LocaleMiddleware takes a browser's language: 'de-at' -> 'de' (its generic
    code), 'zh-hk' -> 'zh-hant' (Django's fallback), 'pt' -> 'pt-br' (a listed
    variant of the same language). Like Django, only languages Django has a
    catalogue for are resolved this way, and none with USE_I18N = False.
    """
    wanted = normalize_language(code)
    if not wanted:
        return ""
    codes = language_codes()
    if wanted in codes:
        return wanted
    try:
        variant = normalize_language(translation.get_supported_language_variant(wanted))
    except LookupError:
        return None
    return variant if variant in codes else None


def check_language(language: Any, field: str = "language") -> str:
    """Return the settings.LANGUAGES code ``language`` stands for ('' or None: none), or raise.

    'pt_BR' -> 'pt-br'; an unlisted variant -> the listed code (:func:`supported_language`).
    """
    if language in (None, ""):
        return ""
    if isinstance(language, str):
        supported = supported_language(language)
        if supported:
            return supported
    raise InvalidArgument(field, language, "is not a language code in settings.LANGUAGES, nor a variant of one")


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
