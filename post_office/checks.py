"""System checks for misconfiguration, with ids ``post_office.E0xx`` / ``W0xx``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .conf import KNOWN_KEYS, is_queueing_backend, mailers, mailers_configured
from .conf import settings as po_settings


@checks.register("post_office")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    try:
        raw = po_settings.raw
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="post_office.E001")]

    for key in sorted(set(raw) - KNOWN_KEYS):
        errors.append(
            checks.Warning(
                f"POST_OFFICE[{key!r}] is not a post_office setting and is ignored.",
                hint="Check the spelling against the settings reference.",
                id="post_office.W001",
            )
        )

    backends = raw.get("BACKENDS") or {}
    for alias, target in backends.items():
        if not isinstance(target, str):
            errors.append(
                checks.Error(
                    f"POST_OFFICE['BACKENDS'][{alias!r}] = {target!r} is not a dotted backend path or a MAILERS alias.",
                    id="post_office.E003",
                )
            )
            continue
        if is_queueing_backend(target) or (
            mailers_configured() and target in mailers() and is_queueing_backend(mailers()[target].get("BACKEND"))
        ):
            errors.append(
                checks.Error(
                    f"POST_OFFICE['BACKENDS'][{alias!r}] is the queueing backend itself: emails would be queued forever.",
                    hint="Name the backend that really sends, e.g. django.core.mail.backends.smtp.EmailBackend.",
                    id="post_office.E002",
                )
            )
        elif not (mailers_configured() and target in mailers()):
            from django.utils.module_loading import import_string

            try:
                import_string(target)
            except ImportError as error:
                errors.append(
                    checks.Error(
                        f"POST_OFFICE['BACKENDS'][{alias!r}] = {target!r} cannot be imported: {error}",
                        id="post_office.E003",
                    )
                )
            else:
                if mailers_configured():
                    # Django 6.1 deprecates creating backends outside MAILERS; its SMTP
                    # backend then reads EMAIL_* settings, which MAILERS forbids.
                    errors.append(
                        checks.Warning(
                            f"POST_OFFICE['BACKENDS'][{alias!r}] = {target!r} is a backend path, but MAILERS is "
                            "configured: Django creates backends from MAILERS entries only.",
                            hint=f"Add a MAILERS entry with BACKEND {target!r} and its OPTIONS, and name its alias here.",
                            id="post_office.W002",
                        )
                    )
    if "default" not in po_settings.BACKENDS:
        errors.append(
            checks.Error(
                "No delivery backend for the 'default' alias: MAILERS['default'] is the queueing backend.",
                hint="Set POST_OFFICE['BACKENDS'] = {'default': '<MAILERS alias that sends>'}.",
                id="post_office.E004",
            )
        )

    from .validation import parse_priority

    try:
        parse_priority(po_settings.DEFAULT_PRIORITY)
    except ValueError as error:
        errors.append(checks.Error(f"POST_OFFICE['DEFAULT_PRIORITY']: {error}", id="post_office.E005"))

    if po_settings.FILE_STORAGE not in settings.STORAGES:
        errors.append(
            checks.Error(
                f"POST_OFFICE['FILE_STORAGE'] = {po_settings.FILE_STORAGE!r} is not an alias in STORAGES.",
                id="post_office.E006",
            )
        )

    try:
        from .rendering import get_engine

        get_engine()
    except ImproperlyConfigured as error:
        errors.append(checks.Error(str(error), id="post_office.E007"))

    if po_settings.CELERY_ENABLED:
        try:
            import celery  # noqa: F401
        except ImportError:
            errors.append(
                checks.Error(
                    "POST_OFFICE['CELERY_ENABLED'] is True but Celery is not installed.",
                    hint="pip install 'django-post-office-ng[celery]'",
                    id="post_office.E008",
                )
            )

    try:
        from .retry import check_error_handler

        check_error_handler()
    except ImproperlyConfigured as error:
        errors.append(checks.Error(str(error), id="post_office.E010"))

    errors.extend(_check_templates(raw))

    for key in ("LOG_LEVEL",):
        if raw.get(key, 2) not in (0, 1, 2):
            errors.append(
                checks.Error(f"POST_OFFICE['LOG_LEVEL'] must be 0, 1 or 2, not {raw[key]!r}.", id="post_office.E009")
            )
    return errors


def _check_templates(raw: dict[str, Any]) -> list[checks.CheckMessage]:
    """The template settings: LANGUAGE_FALLBACKS (E011) and TEMPLATE_CACHE (E012)."""
    errors: list[checks.CheckMessage] = []
    fallbacks = raw.get("LANGUAGE_FALLBACKS", True)
    if isinstance(fallbacks, dict):
        for language, chain in fallbacks.items():
            if not isinstance(language, str) or not (
                isinstance(chain, str) or (isinstance(chain, (list, tuple)) and all(isinstance(c, str) for c in chain))
            ):
                errors.append(
                    checks.Error(
                        f"POST_OFFICE['LANGUAGE_FALLBACKS'][{language!r}] = {chain!r} is not a list of language codes.",
                        hint="e.g. {'pt-br': ['pt', 'es']}: the languages tried after 'pt-br', before the base template.",
                        id="post_office.E011",
                    )
                )
    elif not isinstance(fallbacks, bool):
        errors.append(
            checks.Error(
                f"POST_OFFICE['LANGUAGE_FALLBACKS'] must be True, False or a dict, not {fallbacks!r}.",
                id="post_office.E011",
            )
        )
    cache = raw.get("TEMPLATE_CACHE", getattr(settings, "POST_OFFICE_CACHE", True))
    if isinstance(cache, str) and cache not in settings.CACHES:
        errors.append(
            checks.Error(
                f"POST_OFFICE['TEMPLATE_CACHE'] = {cache!r} is not an alias in CACHES.",
                hint="Name a CACHES alias, or use True (the 'post_office' alias, else 'default') or False.",
                id="post_office.E012",
            )
        )
    elif not isinstance(cache, (bool, str)):
        errors.append(
            checks.Error(
                f"POST_OFFICE['TEMPLATE_CACHE'] must be True, False or a CACHES alias, not {cache!r}.",
                id="post_office.E012",
            )
        )
    return errors
