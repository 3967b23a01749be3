"""System checks for misconfiguration, with ids ``post_office.E0xx`` / ``W0xx``: one function per id.

:func:`check_settings` runs them all (registered under the ``post_office`` tag).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import KNOWN_KEYS, is_queueing_backend, mailers, mailers_configured, template_engine
from .conf import settings as po_settings
from .delivery.retry import check_error_handler
from .restricted import restricted_engine
from .validation import parse_priority

Messages = list[checks.CheckMessage]


@checks.register("post_office")
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> Messages:
    try:
        raw = po_settings.raw
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="post_office.E001")]
    errors: Messages = []
    for check in CHECKS:
        errors.extend(check(raw))
    return errors


def unknown_keys(raw: dict[str, Any]) -> Messages:
    """W001: a key of POST_OFFICE this app does not read."""
    return [
        checks.Warning(
            f"POST_OFFICE[{key!r}] is not a post_office setting and is ignored.",
            hint="Check the spelling against the settings reference.",
            id="post_office.W001",
        )
        for key in sorted(set(raw) - KNOWN_KEYS - RETIRED_KEYS.keys())
    ]


def _backend_targets(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    targets = list((raw.get("BACKENDS") or {}).items())
    legacy = po_settings.legacy_email_backend()  # W043
    if legacy is not None:
        targets.append(("default", legacy))
    return targets


def _is_mailer(target: str) -> bool:
    return mailers_configured() and target in mailers()


def backend_not_queueing(raw: dict[str, Any]) -> Messages:
    """E002: a delivery alias that names the queueing backend itself."""
    return [
        checks.Error(
            f"POST_OFFICE['BACKENDS'][{alias!r}] is the queueing backend itself: emails would be queued forever.",
            hint="Name the backend that really sends, e.g. django.core.mail.backends.smtp.EmailBackend.",
            id="post_office.E002",
        )
        for alias, target in _backend_targets(raw)
        if isinstance(target, str)
        and (
            is_queueing_backend(target)
            or (_is_mailer(target) and is_queueing_backend(mailers()[target].get("BACKEND")))
        )
    ]


def backend_importable(raw: dict[str, Any]) -> Messages:
    """E003: a delivery alias that is neither a MAILERS alias nor an importable backend path."""
    errors: Messages = []
    for alias, target in _backend_targets(raw):
        if not isinstance(target, str):
            errors.append(
                checks.Error(
                    f"POST_OFFICE['BACKENDS'][{alias!r}] = {target!r} is not a dotted backend path or a MAILERS alias.",
                    id="post_office.E003",
                )
            )
        elif not is_queueing_backend(target) and not _is_mailer(target):
            try:
                import_string(target)
            except ImportError as error:
                errors.append(
                    checks.Error(
                        f"POST_OFFICE['BACKENDS'][{alias!r}] = {target!r} cannot be imported: {error}",
                        id="post_office.E003",
                    )
                )
    return errors


def backend_path_beside_mailers(raw: dict[str, Any]) -> Messages:
    """W002: a backend path while MAILERS is configured (Django 6.1 creates backends from MAILERS only)."""
    if not mailers_configured():
        return []
    errors: Messages = []
    for alias, target in _backend_targets(raw):
        if not isinstance(target, str) or is_queueing_backend(target) or _is_mailer(target):
            continue
        try:
            import_string(target)
        except ImportError:
            continue  # E003
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
    return errors


def default_backend(raw: dict[str, Any]) -> Messages:
    """E004: no delivery backend for the 'default' alias."""
    if "default" in po_settings.BACKENDS:
        return []
    return [
        checks.Error(
            "No delivery backend for the 'default' alias: MAILERS['default'] is the queueing backend.",
            hint="Set POST_OFFICE['BACKENDS'] = {'default': '<MAILERS alias that sends>'}.",
            id="post_office.E004",
        )
    ]


def default_priority(raw: dict[str, Any]) -> Messages:
    """E005: DEFAULT_PRIORITY is not a priority."""
    try:
        parse_priority(po_settings.DEFAULT_PRIORITY)
    except ValueError as error:
        return [checks.Error(f"POST_OFFICE['DEFAULT_PRIORITY']: {error}", id="post_office.E005")]
    return []


def file_storage(raw: dict[str, Any]) -> Messages:
    """E006: FILE_STORAGE is not an alias in STORAGES."""
    if po_settings.FILE_STORAGE in settings.STORAGES:
        return []
    return [
        checks.Error(
            f"POST_OFFICE['FILE_STORAGE'] = {po_settings.FILE_STORAGE!r} is not an alias in STORAGES.",
            id="post_office.E006",
        )
    ]


def attachment_dirs(raw: dict[str, Any]) -> Messages:
    """E014: ATTACHMENT_DIRS is not a list of absolute directory paths."""
    try:
        getattr(po_settings, "ATTACHMENT_DIRS")  # noqa: B009 - read for its validation
    except ImproperlyConfigured as error:
        return [
            checks.Error(
                str(error),
                hint="e.g. [BASE_DIR / 'reports']: only files under these may be attached by path.",
                id="post_office.E014",
            )
        ]
    return []


def size_limits(raw: dict[str, Any]) -> Messages:
    """E015: MAX_ATTACHMENT_SIZE or MAX_MESSAGE_SIZE is not a number of bytes or None."""
    errors: Messages = []
    for key in ("MAX_ATTACHMENT_SIZE", "MAX_MESSAGE_SIZE"):
        try:
            getattr(po_settings, key)
        except ImproperlyConfigured as error:
            errors.append(checks.Error(str(error), id="post_office.E015"))
    return errors


def engine(raw: dict[str, Any]) -> Messages:
    """E007: TEMPLATE_ENGINE does not name a Django template engine."""
    try:
        template_engine()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="post_office.E007")]
    return []


def celery_installed(raw: dict[str, Any]) -> Messages:
    """E008: CELERY_ENABLED without Celery."""
    if not po_settings.CELERY_ENABLED:
        return []
    try:
        import celery  # noqa: F401
    except ImportError:
        return [
            checks.Error(
                "POST_OFFICE['CELERY_ENABLED'] is True but Celery is not installed.",
                hint="pip install 'django-post-office-ng[celery]'",
                id="post_office.E008",
            )
        ]
    return []


def celery_options(raw: dict[str, Any]) -> Messages:
    """E030: CELERY_QUEUE, CELERY_PRIORITY_QUEUE or CELERY_TASK_OPTIONS of the wrong kind."""
    errors: Messages = []
    for key in ("CELERY_QUEUE", "CELERY_PRIORITY_QUEUE", "CELERY_TASK_OPTIONS"):
        try:
            getattr(po_settings, key)
        except ImproperlyConfigured as error:
            # (CELERY_PRIORITY_QUEUE falls back to CELERY_QUEUE: one fault, one message.)
            if all(str(error) != found.msg for found in errors):
                errors.append(checks.Error(str(error), id="post_office.E030"))
    return errors


def log_level(raw: dict[str, Any]) -> Messages:
    """E009: LOG_LEVEL is not 0, 1 or 2."""
    if raw.get("LOG_LEVEL", 2) in (0, 1, 2):
        return []
    return [
        checks.Error(f"POST_OFFICE['LOG_LEVEL'] must be 0, 1 or 2, not {raw['LOG_LEVEL']!r}.", id="post_office.E009")
    ]


def error_handler(raw: dict[str, Any]) -> Messages:
    """E010: ERROR_HANDLER cannot be imported."""
    try:
        check_error_handler()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="post_office.E010")]
    return []


def language_fallbacks(raw: dict[str, Any]) -> Messages:
    """E011: LANGUAGE_FALLBACKS is not True, False or a dict of language lists."""
    fallbacks = raw.get("LANGUAGE_FALLBACKS", True)
    if isinstance(fallbacks, bool):
        return []
    if not isinstance(fallbacks, dict):
        return [
            checks.Error(
                f"POST_OFFICE['LANGUAGE_FALLBACKS'] must be True, False or a dict, not {fallbacks!r}.",
                id="post_office.E011",
            )
        ]
    return [
        checks.Error(
            f"POST_OFFICE['LANGUAGE_FALLBACKS'][{language!r}] = {chain!r} is not a list of language codes.",
            hint="e.g. {'pt-br': ['pt', 'es']}: the languages tried after 'pt-br', before the base template.",
            id="post_office.E011",
        )
        for language, chain in fallbacks.items()
        if not isinstance(language, str)
        or not (isinstance(chain, str) or (isinstance(chain, (list, tuple)) and all(isinstance(c, str) for c in chain)))
    ]


def template_cache(raw: dict[str, Any]) -> Messages:
    """E012: TEMPLATE_CACHE is not True, False or a CACHES alias."""
    cache = raw.get("TEMPLATE_CACHE", getattr(settings, "POST_OFFICE_CACHE", True))
    if isinstance(cache, str) and cache not in settings.CACHES:
        return [
            checks.Error(
                f"POST_OFFICE['TEMPLATE_CACHE'] = {cache!r} is not an alias in CACHES.",
                hint="Name a CACHES alias, or use True (the 'post_office' alias, else 'default') or False.",
                id="post_office.E012",
            )
        ]
    if not isinstance(cache, (bool, str)):
        return [
            checks.Error(
                f"POST_OFFICE['TEMPLATE_CACHE'] must be True, False or a CACHES alias, not {cache!r}.",
                id="post_office.E012",
            )
        ]
    return []


def restricted_libraries(raw: dict[str, Any]) -> Messages:
    """E013: RESTRICTED_TEMPLATE_LIBRARIES is not a list of the template engine's tag libraries."""
    if "RESTRICTED_TEMPLATE_LIBRARIES" not in raw and not po_settings.RESTRICTED_TEMPLATES:
        return []
    try:
        base = template_engine()
    except ImproperlyConfigured:
        return []  # E007 reports it.
    try:
        restricted_engine(base, po_settings.RESTRICTED_TEMPLATE_LIBRARIES)
    except ImproperlyConfigured as error:
        return [
            checks.Error(
                str(error),
                hint="List the names {% load %} takes, e.g. ['i18n', 'l10n', 'tz'].",
                id="post_office.E013",
            )
        ]
    return []


# --- django-post_office's settings keys (W040-W043, E044) ----------------------------------------------------

#: django-post_office 3.x keys that do nothing here: each gets its own warning (and no W001 spelling hint).
RETIRED_KEYS: dict[str, tuple[str, str]] = {
    "LOCK_FILE_NAME": (
        "post_office.W040",
        "delivery takes no lock file. Every email is claimed in the database, so overlapping "
        "send_queued_mail runs, on one host or many, never send the same email.",
    ),
    "CONTEXT_FIELD_CLASS": (
        "post_office.W041",
        "an email's context is always stored in Django's JSONField (a pickled context could run code when "
        "it is read), so it must be JSON-safe when it is stored; no other field class is used.",
    ),
    "WEBHOOKS": (
        "post_office.W042",
        "it configures django-post_office's webhook views for Amazon SES and SparkPost delivery events, "
        "which this package does not have.",
    ),
}


def retired_keys(raw: dict[str, Any]) -> Messages:
    """W040-W042: a django-post_office key that does nothing here, said once, with why."""
    return [
        checks.Warning(
            f"POST_OFFICE[{key!r}] is not needed here: {why}",
            hint=f"Remove {key!r} from POST_OFFICE.",
            id=check_id,
        )
        for key, (check_id, why) in RETIRED_KEYS.items()
        if key in raw
    ]


def legacy_email_backend(raw: dict[str, Any]) -> Messages:
    """W043: django-post_office's old POST_OFFICE['EMAIL_BACKEND'], read only without BACKENDS (as it did)."""
    if "EMAIL_BACKEND" not in raw:
        return []
    value = po_settings.legacy_email_backend()
    if value is None:
        return [
            checks.Warning(
                "POST_OFFICE['EMAIL_BACKEND'] is not needed here: POST_OFFICE['BACKENDS'] or DEFAULT_MAILER is "
                "set, so it is ignored (as django-post_office ignores it then).",
                hint="Remove 'EMAIL_BACKEND' from POST_OFFICE.",
                id="post_office.W043",
            )
        ]
    return [
        checks.Warning(
            f"POST_OFFICE['EMAIL_BACKEND'] is django-post_office's old way to name the default delivery backend; "
            f"it is read as POST_OFFICE['BACKENDS']['default'] = {value!r}.",
            hint=f"Write POST_OFFICE['BACKENDS'] = {{'default': {value!r}}} instead.",
            id="post_office.W043",
        )
    ]


def default_mailer(raw: dict[str, Any]) -> Messages:
    """E044: DEFAULT_MAILER names no delivery backend (a BACKENDS alias, or a MAILERS alias that sends)."""
    value = raw.get("DEFAULT_MAILER")
    if value in (None, "", "default") or (isinstance(value, str) and value in (raw.get("BACKENDS") or {})):
        return []
    if not isinstance(value, str):
        problem = "must be the name of a delivery alias"
    elif not _is_mailer(value):
        problem = "is neither an alias in POST_OFFICE['BACKENDS'] nor a MAILERS alias"
    elif is_queueing_backend(mailers()[value].get("BACKEND")):
        problem = "names a MAILERS entry that is the queueing backend itself: emails would be queued forever"
    else:
        return []
    return [
        checks.Error(
            f"POST_OFFICE['DEFAULT_MAILER'] = {value!r} {problem}.",
            hint="Name the alias whose backend really sends the email that names no backend.",
            id="post_office.E044",
        )
    ]


#: Every check, in the order their messages are reported.
CHECKS: list[Callable[[dict[str, Any]], Messages]] = [
    unknown_keys,
    retired_keys,
    legacy_email_backend,
    default_mailer,
    backend_importable,
    backend_not_queueing,
    backend_path_beside_mailers,
    default_backend,
    default_priority,
    file_storage,
    attachment_dirs,
    size_limits,
    engine,
    celery_installed,
    celery_options,
    error_handler,
    language_fallbacks,
    template_cache,
    log_level,
    restricted_libraries,
]


# --- the database's migration history (E020/W020) ---------------------------------------------------------

#: The last of django-post_office's migrations we keep under their names, and the last conversion step.
DPO_FIRST, CONVERTED = "0001_initial", "0022_convert_queue_tables"
#: The last migration of this app's pre-release history, replaced by django-post_office's names + 0015-0022.
PRE_RELEASE_LAST = "0010_email_admin_indexes"


@checks.register("post_office", checks.Tags.database)
def check_converted(app_configs: Sequence[AppConfig] | None = None, databases: Any = None, **kwargs: Any) -> Messages:
    """E020: the post_office tables are still django-post_office's (or half converted): say what to run.

    An error on every command but ``migrate`` (and ``check --database``), which passes ``databases``:
    there it is a warning (W020), since ``migrate`` is what converts the tables.
    """
    from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router
    from django.db.migrations.recorder import MigrationRecorder

    aliases = databases if databases is not None else [DEFAULT_DB_ALIAS]
    messages: Messages = []
    for alias in aliases:
        if alias not in connections.settings or not router.allow_migrate(alias, "post_office"):
            continue
        try:
            applied = {
                name for app, name in MigrationRecorder(connections[alias]).applied_migrations() if app == "post_office"
            }
        except DatabaseError:
            continue  # no database yet, or not reachable: other commands will say so
        text = _conversion_advice(applied, alias)
        if text:
            level = checks.Warning if databases is not None else checks.Error
            messages.append(
                level(
                    text,
                    hint="See “Converting a django-post_office database” in docs/migrating.rst; back up first.",
                    id="post_office.W020" if databases is not None else "post_office.E020",
                )
            )
    return messages


def _conversion_advice(applied: set[str], alias: str) -> str:
    database = "" if alias == "default" else f" --database {alias}"
    if CONVERTED in applied or not applied:
        return ""
    if PRE_RELEASE_LAST in applied and DPO_FIRST not in applied:
        return (
            f"The post_office tables of database “{alias}” were created by a pre-release of this app, whose "
            "migrations were renamed. Their schema is the current one: record that with “python manage.py migrate "
            f"post_office {CONVERTED} --fake{database}”."
        )
    if DPO_FIRST not in applied:
        return ""
    started = sorted(name for name in applied if name >= "0015")
    if started:
        return (
            f"The conversion of database “{alias}” from django-post_office stopped after {started[-1]}. Run “python "
            f"manage.py migrate post_office{database}” again: it resumes where it stopped."
        )
    return (
        f"The post_office tables of database “{alias}” are django-post_office's and not converted yet, so mail "
        f"cannot be queued or delivered. Run “python manage.py migrate post_office{database}” to convert them in "
        "place (ids, dates and history are kept)."
    )
