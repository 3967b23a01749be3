"""Every post_office setting, its default and meaning, read lazily.

Settings live in the ``POST_OFFICE`` dict of the Django settings, with the same
keys and meanings as django-post_office. Nothing here is read at import time, so
``override_settings(POST_OFFICE=...)`` always takes effect.

Use it as ``from post_office.conf import settings as po_settings`` and read
attributes: ``po_settings.BATCH_SIZE``.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from .conf_tasks import TASKS_KEYS, TasksSettings

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache
    from django.template import Engine

#: The keys this app understands; anything else in POST_OFFICE is reported by a check.
KNOWN_KEYS = frozenset(
    {
        "BACKENDS",
        "DEFAULT_PRIORITY",
        "BATCH_SIZE",
        "LOG_LEVEL",
        "MAX_RETRIES",
        "RETRY_INTERVAL",
        "MESSAGE_ID_ENABLED",
        "MESSAGE_ID_FQDN",
        "SENDING_ORDER",
        "OVERRIDE_RECIPIENTS",
        "FILE_STORAGE",
        "ATTACHMENT_DIRS",
        "MAX_ATTACHMENT_SIZE",
        "MAX_MESSAGE_SIZE",
        "TEMPLATE_ENGINE",
        "TEMPLATE_CACHE",
        "TEMPLATE_CACHE_TIMEOUT",
        "LANGUAGE_FALLBACKS",
        "STRICT_TEMPLATE_VARIABLES",
        "RESTRICTED_TEMPLATES",
        "RESTRICTED_TEMPLATE_LIBRARIES",
        "AUTO_PLAIN_TEXT",
        "CELERY_ENABLED",
        "CELERY_QUEUE",
        "CELERY_PRIORITY_QUEUE",
        "CELERY_TASK_OPTIONS",
        *TASKS_KEYS,  # Django Tasks (post_office.conf_tasks)
        "THREADS_PER_PROCESS",
        "BATCH_DELIVERY_TIMEOUT",
        "LEASE_SECONDS",
        "ERROR_HANDLER",
        "MAX_RETRY_INTERVAL",
        "MAX_CONNECTIONS",
        "SEND_TIMEOUT",
        "RATE_LIMITS",
        "MAX_BATCH",
        "MAX_DEFERRED",
        "THROTTLE",
        "EMPTY_QUEUE_SLEEP",
        "PAUSED",
        "HEARTBEAT_INTERVAL",
        "HEALTH_MAX_AGE",
        "HEALTH_MAX_SILENCE",
        "DO_NOT_SEND_EMPTY_CACHE",
        # django-post_office's other ways to name the default delivery backend (see BACKENDS).
        "DEFAULT_MAILER",
        "EMAIL_BACKEND",
    }
)

QUEUEING_BACKEND = "post_office.EmailBackend"
QUEUEING_BACKEND_PATHS = frozenset(
    {QUEUEING_BACKEND, "post_office.backends.EmailBackend", "post_office.enqueue.backend.EmailBackend"}
)
DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def mailers_configured() -> bool:
    """Return True when the project uses Django 6.1's ``MAILERS`` setting."""
    return hasattr(django_settings, "MAILERS")


def mailers() -> dict[str, dict[str, Any]]:
    return getattr(django_settings, "MAILERS", None) or {}


def is_queueing_backend(path: str | None) -> bool:
    return path in QUEUEING_BACKEND_PATHS


def mail_passwords(*extra: Any) -> list[str]:
    """The passwords configured for sending mail (and ``extra``), longest first: cut out of any error shown."""
    found = [getattr(django_settings, "EMAIL_HOST_PASSWORD", ""), *extra]
    found += [(entry.get("OPTIONS") or {}).get("password") for entry in mailers().values()]
    return sorted({str(secret) for secret in found if secret}, key=len, reverse=True)


class PostOfficeSettings(TasksSettings):
    """Typed, documented access to ``settings.POST_OFFICE``."""

    def _get(self, key: str, default: Any) -> Any:
        return self.raw.get(key, default)

    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(django_settings, "POST_OFFICE", None) or {}
        if not isinstance(value, dict):
            raise ImproperlyConfigured("The POST_OFFICE setting must be a dict.")
        return value

    @property
    def BACKENDS(self) -> dict[str, str]:
        """Delivery backends by alias.

        Each value is either a dotted path to an email backend class or, with
        Django 6.1's ``MAILERS``, the alias of a ``MAILERS`` entry. The
        ``'default'`` alias falls back to the real backend behind
        ``EMAIL_BACKEND`` (Django's SMTP backend when ``EMAIL_BACKEND`` is this
        app's queueing backend), or to ``MAILERS['default']`` when that entry is
        not the queueing backend.
        """
        backends = dict(self._get("BACKENDS", {}) or {})
        mailer = self.DEFAULT_MAILER
        if mailer:
            # django-post_office 3.12: email that names no backend goes through this alias.
            backends["default"] = backends.get(mailer, mailer)
        elif "default" not in backends:
            default = self.legacy_email_backend() or self._default_delivery_backend()
            if default is not None:
                backends["default"] = default
        return backends

    @property
    def DEFAULT_MAILER(self) -> str | None:
        """django-post_office 3.12's name for the delivery alias of email that names no backend: None.

        A ``BACKENDS`` alias or a ``MAILERS`` alias; when set (and not
        ``'default'``), ``BACKENDS['default']`` is that alias's backend. A value
        that is not a string is ignored (and reported by a system check).
        """
        value = self._get("DEFAULT_MAILER", None)
        return value if isinstance(value, str) and value not in ("", "default") else None

    def legacy_email_backend(self) -> str | None:
        """django-post_office's ``POST_OFFICE['EMAIL_BACKEND']``, read as it read it: only without BACKENDS."""
        if self._get("BACKENDS", None) or self.DEFAULT_MAILER:
            return None
        return self._get("EMAIL_BACKEND", None) or None

    @staticmethod
    def _default_delivery_backend() -> str | None:
        if mailers_configured():
            entry = mailers().get("default")
            if entry is not None and not is_queueing_backend(entry.get("BACKEND", DJANGO_SMTP_BACKEND)):
                return "default"
            return None
        path = django_settings.EMAIL_BACKEND
        return DJANGO_SMTP_BACKEND if is_queueing_backend(path) else path

    @property
    def DEFAULT_PRIORITY(self) -> str | int:
        """Priority of emails that do not name one: ``'medium'``."""
        return self._get("DEFAULT_PRIORITY", "medium")

    @property
    def BATCH_SIZE(self) -> int:
        """How many emails a worker claims at once: 100."""
        return int(self._get("BATCH_SIZE", 100))

    @property
    def LOG_LEVEL(self) -> int:
        """0 logs nothing, 1 logs failed attempts, 2 logs every attempt (default)."""
        return int(self._get("LOG_LEVEL", 2))

    @property
    def MAX_RETRIES(self) -> int:
        """How many times a transient failure is retried before the email is failed: 5.

        (django-post_office defaults to 0, which fails an email on its first
        transient error; set 0 to keep that.)
        """
        return int(self._get("MAX_RETRIES", 5))

    @property
    def RETRY_INTERVAL(self) -> datetime.timedelta:
        """Delay before the first retry: 15 minutes; it doubles for each further retry."""
        return _duration(self._get("RETRY_INTERVAL", datetime.timedelta(minutes=15)))

    @property
    def MAX_RETRY_INTERVAL(self) -> datetime.timedelta:
        """Upper bound of the doubling retry delay: 6 hours."""
        return _duration(self._get("MAX_RETRY_INTERVAL", datetime.timedelta(hours=6)))

    @property
    def ERROR_HANDLER(self) -> str | None:
        """Dotted path of ``handler(email, exception)`` returning 'permanent', 'transient' or None.

        None (default) uses ``post_office.retry.classify``. (django-mailer's
        MAILER_ERROR_HANDLER has another signature and is not read.)
        """
        return self._get("ERROR_HANDLER", None)

    @property
    def SEND_TIMEOUT(self) -> float:
        """Socket timeout given to backends that have none (seconds): 30."""
        return float(self._get("SEND_TIMEOUT", 30))

    @property
    def MAX_CONNECTIONS(self) -> int | dict[str, int] | None:
        """Open connections per backend alias in one process: one per thread.

        An int applies to every alias; a dict maps aliases to their own cap.
        """
        return self._get("MAX_CONNECTIONS", None)

    def max_connections(self, alias: str) -> int | None:
        value = self.MAX_CONNECTIONS
        if isinstance(value, dict):
            value = value.get(alias)
        return int(value) if value else None

    @property
    def RATE_LIMITS(self) -> dict[str, float]:
        """Emails per second per backend alias, held across every process of a host: none.

        e.g. ``{"default": 14}`` for Amazon SES's default quota.
        """
        return dict(self._get("RATE_LIMITS", {}) or {})

    @property
    def MAX_BATCH(self) -> int | None:
        """Stop a run after this many emails were sent (django-mailer's MAILER_EMAIL_MAX_BATCH)."""
        return _optional_int(self._get("MAX_BATCH", getattr(django_settings, "MAILER_EMAIL_MAX_BATCH", None)))

    @property
    def MAX_DEFERRED(self) -> int | None:
        """Stop a run after this many failed attempts (django-mailer's MAILER_EMAIL_MAX_DEFERRED)."""
        return _optional_int(self._get("MAX_DEFERRED", getattr(django_settings, "MAILER_EMAIL_MAX_DEFERRED", None)))

    @property
    def THROTTLE(self) -> float:
        """Seconds each delivery thread sleeps after an email (django-mailer's MAILER_EMAIL_THROTTLE): 0."""
        return float(self._get("THROTTLE", getattr(django_settings, "MAILER_EMAIL_THROTTLE", 0)) or 0)

    @property
    def EMPTY_QUEUE_SLEEP(self) -> float:
        """Seconds the long-running worker sleeps when the queue is empty: 30.

        On PostgreSQL it wakes at once when mail is queued. Falls back to
        django-mailer's MAILER_EMPTY_QUEUE_SLEEP.
        """
        return float(self._get("EMPTY_QUEUE_SLEEP", getattr(django_settings, "MAILER_EMPTY_QUEUE_SLEEP", 30)))

    @property
    def DO_NOT_SEND_EMPTY_CACHE(self) -> float:
        """Seconds a process inserts without the do-not-send check after finding the list empty: 5 (0: never)."""
        return max(0.0, float(self._get("DO_NOT_SEND_EMPTY_CACHE", 5) or 0))

    @property
    def PAUSED(self) -> bool:
        """Pause delivery (enqueueing goes on). The ``mail_delivery pause`` command does the same at run time."""
        return bool(self._get("PAUSED", False))

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        """Seconds between the long-running worker's heartbeat writes: 10."""
        return float(self._get("HEARTBEAT_INTERVAL", 10))

    @property
    def HEALTH_MAX_AGE(self) -> float:
        """Minutes the oldest due email may wait before ``mail_delivery health`` calls mail stuck: 30.

        The admin's health page warns past the same age; ``--max-age`` overrides it.
        """
        return float(self._get("HEALTH_MAX_AGE", 30))

    @property
    def HEALTH_MAX_SILENCE(self) -> float:
        """Minutes without a sign of life from any worker, while mail is due, before mail counts as stuck: 10.

        Workers are ``runmailer`` processes and ``send_queued_mail`` runs (their
        heartbeats); ``--max-silence`` overrides it.
        """
        return float(self._get("HEALTH_MAX_SILENCE", 10))

    @property
    def MESSAGE_ID_ENABLED(self) -> bool:
        """Give every email a Message-ID at enqueue and store it: False."""
        return bool(self._get("MESSAGE_ID_ENABLED", False))

    @property
    def MESSAGE_ID_FQDN(self) -> str:
        """Domain part of generated Message-IDs: this host's DNS name."""
        value = self._get("MESSAGE_ID_FQDN", None)
        if value:
            return str(value)
        from django.core.mail.utils import DNS_NAME

        return str(DNS_NAME)

    @property
    def SENDING_ORDER(self) -> list[str]:
        """Order in which due emails are claimed: ``['-priority']``, then oldest first."""
        return list(self._get("SENDING_ORDER", ["-priority"]))

    @property
    def OVERRIDE_RECIPIENTS(self) -> list[str] | None:
        """Deliver every email to these addresses instead (staging): None."""
        value = self._get("OVERRIDE_RECIPIENTS", None)
        if isinstance(value, str):
            return [value]
        return list(value) if value else None

    @property
    def FILE_STORAGE(self) -> str:
        """Alias in ``STORAGES`` where attachment files are kept: ``'default'``."""
        return str(self._get("FILE_STORAGE", "default"))

    @property
    def ATTACHMENT_DIRS(self) -> tuple[str, ...]:
        """Directories whose files attachments may name by path: none, so a path is refused.

        Absolute paths; a path given as an attachment is read only when, with
        its links and ``..`` resolved, it lies inside one of them.
        """
        value = self._get("ATTACHMENT_DIRS", ()) or ()
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(d, (str, os.PathLike)) for d in value):
            raise ImproperlyConfigured(
                f"POST_OFFICE['ATTACHMENT_DIRS'] must be a list of absolute directory paths, not {value!r}."
            )
        dirs = tuple(os.fspath(d) for d in value)
        relative = [d for d in dirs if not os.path.isabs(d)]
        if relative:
            raise ImproperlyConfigured(
                f"POST_OFFICE['ATTACHMENT_DIRS'] must hold absolute paths; {relative[0]!r} is relative."
            )
        return dirs

    @property
    def MAX_ATTACHMENT_SIZE(self) -> int | None:
        """The largest attachment queued, in bytes: 20 MiB (20971520); None for no limit."""
        return _size_limit("MAX_ATTACHMENT_SIZE", self._get("MAX_ATTACHMENT_SIZE", 20 * 1024 * 1024))

    @property
    def MAX_MESSAGE_SIZE(self) -> int | None:
        """The largest email queued (subject, bodies and attachments), in bytes: 25 MiB (26214400); None for no limit.

        Counted before MIME encoding, which adds about a third for attachments.
        """
        return _size_limit("MAX_MESSAGE_SIZE", self._get("MAX_MESSAGE_SIZE", 25 * 1024 * 1024))

    @property
    def TEMPLATE_ENGINE(self) -> str | None:
        """Alias in ``TEMPLATES`` used to render email templates.

        None (default) uses a ``'post_office'`` alias when one exists, else the
        first Django template engine.
        """
        return self._get("TEMPLATE_ENGINE", None)

    @property
    def TEMPLATE_CACHE(self) -> bool | str:
        """Cache template lookups in Django's cache: True (default), False, or a ``CACHES`` alias.

        True uses a ``'post_office'`` cache alias when one is configured, else
        ``'default'`` unless that is a per-process cache (``LocMemCache``), which
        other processes could not invalidate. django-post_office's top-level
        ``POST_OFFICE_CACHE = False`` or ``POST_OFFICE_TEMPLATE_CACHE = False``
        turns it off too.
        """
        value = self._get("TEMPLATE_CACHE", _django_post_office_cache_switch())
        return value if isinstance(value, str) else bool(value)

    @property
    def TEMPLATE_CACHE_TIMEOUT(self) -> float | None:
        """Seconds a cached template lookup lives: 3600 (edits invalidate it at once anyway)."""
        value = self._get("TEMPLATE_CACHE_TIMEOUT", 3600)
        return None if value is None else float(value)

    @property
    def LANGUAGE_FALLBACKS(self) -> bool | dict[str, list[str]]:
        """How a missing translation falls back: True (default), False, or a dict of chains.

        True: ``'pt-br'`` tries ``'pt-br'``, then ``'pt'``, then the base template.
        False: a missing translation is an error (UnknownTemplate). A dict maps a
        language to the languages tried after it (``{'pt-br': ['pt', 'es']}``);
        the base template is always tried last.
        """
        value = self._get("LANGUAGE_FALLBACKS", True)
        return value if isinstance(value, dict) else bool(value)

    @property
    def STRICT_TEMPLATE_VARIABLES(self) -> bool:
        """Refuse to render a template that uses variables missing from the context: False."""
        return bool(self._get("STRICT_TEMPLATE_VARIABLES", False))

    @property
    def RESTRICTED_TEMPLATES(self) -> bool:
        """Restricted mode for database templates, for projects where non-developers edit them: False.

        Database templates may then load only RESTRICTED_TEMPLATE_LIBRARIES, use
        no ``{% debug %}``, ``{% include %}`` or ``{% extends %}``, and see the
        context only as data (strings, numbers, dates, lists and dicts of them).
        See docs/security.md.
        """
        return bool(self._get("RESTRICTED_TEMPLATES", False))

    @property
    def RESTRICTED_TEMPLATE_LIBRARIES(self) -> tuple[str, ...]:
        """The tag libraries database templates may ``{% load %}`` in restricted mode: none.

        Names as ``{% load %}`` takes them (``['i18n', 'l10n', 'tz']``). A listed
        library that the template engine builds in stays built in.
        """
        value = self._get("RESTRICTED_TEMPLATE_LIBRARIES", ()) or ()
        if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
            raise ImproperlyConfigured(
                f"POST_OFFICE['RESTRICTED_TEMPLATE_LIBRARIES'] must be a list of tag library names, not {value!r}."
            )
        return tuple(value)

    @property
    def AUTO_PLAIN_TEXT(self) -> bool:
        """Generate the plain-text part from the HTML of templates that have no plain text: True."""
        return bool(self._get("AUTO_PLAIN_TEXT", True))

    # -- Celery (post_office.tasks; docs/celery.rst): where the tasks a commit triggers go ---------

    @property
    def CELERY_ENABLED(self) -> bool:
        """Trigger a Celery delivery task once each transaction that queued email commits: False."""
        return bool(self._get("CELERY_ENABLED", False))

    @property
    def CELERY_QUEUE(self) -> str | None:
        """The queue of the pass a commit triggers, and of ``tasks.beat_schedule()``: None (Celery's default)."""
        return _queue_name("CELERY_QUEUE", self._get("CELERY_QUEUE", None))

    @property
    def CELERY_PRIORITY_QUEUE(self) -> str | None:
        """The queue of the task that sends a commit's high-priority emails (give it a worker): CELERY_QUEUE."""
        return _queue_name("CELERY_PRIORITY_QUEUE", self._get("CELERY_PRIORITY_QUEUE", None)) or self.CELERY_QUEUE

    @property
    def CELERY_TASK_OPTIONS(self) -> dict[str, Any]:
        """Other ``apply_async`` options of the triggered tasks (``routing_key``, ``retry_policy``...): {}."""
        value = self._get("CELERY_TASK_OPTIONS", None) or {}
        if not isinstance(value, dict) or "queue" in value:
            raise ImproperlyConfigured(
                "POST_OFFICE['CELERY_TASK_OPTIONS'] must be a dict of apply_async options without 'queue' "
                f"(set CELERY_QUEUE and CELERY_PRIORITY_QUEUE), not {value!r}."
            )
        return dict(value)

    # -- end of Celery ------------------------------------------------------------------------------

    @property
    def THREADS_PER_PROCESS(self) -> int:
        """Delivery threads (and so connections per alias) in each worker process: 32."""
        return max(1, int(self._get("THREADS_PER_PROCESS", 32)))

    @property
    def BATCH_DELIVERY_TIMEOUT(self) -> float:
        """Seconds a worker waits for one batch to be delivered: 180."""
        return float(self._get("BATCH_DELIVERY_TIMEOUT", 180))

    @property
    def LEASE_SECONDS(self) -> float:
        """How long a claim lasts unless its worker renews it: 10.

        A live worker renews its leases three times per lease for as long as it
        holds the emails (however slow the server), so only a dead worker's
        emails are taken over, within about this many seconds.
        """
        value = self._get("LEASE_SECONDS", None)
        return float(value) if value else 10.0


def _queue_name(key: str, value: Any) -> str | None:
    """A Celery queue name from ``POST_OFFICE[key]``: a non-empty string, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ImproperlyConfigured(f"POST_OFFICE[{key!r}] must be the name of a Celery queue, not {value!r}.")
    return value


def _django_post_office_cache_switch() -> bool:
    """django-post_office's top-level switches: templates are cached unless either is false."""
    return bool(getattr(django_settings, "POST_OFFICE_CACHE", True)) and bool(
        getattr(django_settings, "POST_OFFICE_TEMPLATE_CACHE", True)
    )


def _duration(value: Any) -> datetime.timedelta:
    if isinstance(value, (int, float)):
        return datetime.timedelta(seconds=value)
    return value


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _size_limit(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"POST_OFFICE[{key!r}] must be a number of bytes (1 or more) or None, not {value!r}."
        )
    return value


settings = PostOfficeSettings()


def template_engine() -> Engine:
    """The Django template engine every email template is compiled with (``TEMPLATE_ENGINE``)."""
    from django.template import engines
    from django.template.backends.django import DjangoTemplates

    alias = settings.TEMPLATE_ENGINE
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


_FALLBACK: list[Engine] = []


def _fallback_engine() -> Engine:
    """A plain Django engine, for projects whose TEMPLATES has no Django engine."""
    if not _FALLBACK:
        from django.template import Engine

        _FALLBACK.append(Engine())
    return _FALLBACK[0]


def template_cache() -> BaseCache | None:
    """The cache used for template lookups (``TEMPLATE_CACHE``), or None when lookups are not cached."""
    from django.core.cache import caches
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    setting = settings.TEMPLATE_CACHE
    if setting is False:
        return None
    if isinstance(setting, str):
        try:
            return caches[setting]
        except Exception as error:
            raise ImproperlyConfigured(
                f"POST_OFFICE['TEMPLATE_CACHE'] names {setting!r}, which is not an alias in CACHES: {error}"
            ) from error
    if "post_office" in django_settings.CACHES:
        return caches["post_office"]
    cache = caches["default"]
    # A per-process cache cannot be invalidated from the process where a template
    # is edited: other processes would send the old text until it expires.
    if isinstance(cache, (LocMemCache, DummyCache)):
        return None
    return cache


def __getattr__(name: str) -> Any:
    """Allow ``from post_office import conf; conf.BATCH_SIZE``."""
    if name.isupper():
        return getattr(settings, name)
    raise AttributeError(name)
