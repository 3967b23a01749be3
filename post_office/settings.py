"""django-post_office's ``post_office.settings`` functions, read from this app's settings.

Each ``get_*`` returns what the ``POST_OFFICE`` key means here, with this
app's default (see docs/settings.rst); they are read at each call, so
``override_settings`` applies. The settings themselves live in
:mod:`post_office.conf`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import django
from django.core.cache.backends.base import BaseCache
from django.core.files.storage import Storage, storages
from django.db import models
from django.template import engines

from .conf import mailers_configured, template_cache, template_engine
from .conf import settings as po_settings
from .transport.connections import delivery_aliases

__all__ = [
    "CONTEXT_FIELD_CLASS",
    "DJANGO_HAS_MAILERS",
    "PRE_DJANGO_6",
    "context_field_class",
    "get_available_backends",
    "get_backend",
    "get_backend_aliases",
    "get_batch_delivery_timeout",
    "get_batch_size",
    "get_cache_backend",
    "get_celery_enabled",
    "get_config",
    "get_default_mailer",
    "get_default_priority",
    "get_file_storage",
    "get_lock_file_name",
    "get_log_level",
    "get_max_retries",
    "get_message_id_enabled",
    "get_message_id_fqdn",
    "get_override_recipients",
    "get_retry_timedelta",
    "get_sending_order",
    "get_template_engine",
    "get_threads_per_process",
    "get_webhook_config",
    "mailers_are_configured",
]

PRE_DJANGO_6 = django.VERSION < (6, 0)
DJANGO_HAS_MAILERS = django.VERSION >= (6, 1)
#: The context is always stored as JSON here (a pickled context could run code when read).
CONTEXT_FIELD_CLASS = "django.db.models.JSONField"
context_field_class = models.JSONField


def get_config() -> dict[str, Any]:
    """The ``POST_OFFICE`` dict as the project wrote it."""
    return po_settings.raw


def mailers_are_configured() -> bool:
    """True when the project uses Django 6.1's ``MAILERS``."""
    return DJANGO_HAS_MAILERS and mailers_configured()


def get_available_backends() -> dict[str, str]:
    """Delivery backends by alias: ``POST_OFFICE['BACKENDS']``, its ``'default'`` the one mail naming no backend uses."""
    return po_settings.BACKENDS


def get_backend(alias: str = "default") -> str:
    """The backend (dotted path, or ``MAILERS`` alias) of a delivery alias; KeyError when there is none."""
    return get_available_backends()[alias]


def get_backend_aliases() -> Iterable[str]:
    """Every alias ``mail.send(backend=...)`` accepts."""
    return delivery_aliases()


def get_cache_backend() -> BaseCache | None:
    """The cache template lookups use, or None when they are not cached."""
    return template_cache()


def get_batch_size() -> int:
    return po_settings.BATCH_SIZE


def get_celery_enabled() -> bool:
    return po_settings.CELERY_ENABLED


def get_lock_file_name() -> str:
    """``LOCK_FILE_NAME`` (default ``'post_office'``): only :mod:`post_office.lockfile` reads it; delivery takes no lock."""
    return str(get_config().get("LOCK_FILE_NAME", "post_office"))


def get_threads_per_process() -> int:
    return po_settings.THREADS_PER_PROCESS


def get_default_priority() -> str | int:
    return po_settings.DEFAULT_PRIORITY


def get_default_mailer() -> str:
    """The delivery alias of emails that name no backend: ``DEFAULT_MAILER``, else ``'default'``."""
    return po_settings.DEFAULT_MAILER or "default"


def get_log_level() -> int:
    return po_settings.LOG_LEVEL


def get_sending_order() -> list[str]:
    return po_settings.SENDING_ORDER


def get_template_engine() -> Any:
    """The ``TEMPLATES`` backend email templates are rendered with (``engines[alias]``)."""
    engine = template_engine()
    for backend in engines.all():
        if getattr(backend, "engine", None) is engine:
            return backend
    return engines[po_settings.TEMPLATE_ENGINE or "django"]


def get_override_recipients() -> list[str] | None:
    return po_settings.OVERRIDE_RECIPIENTS


def get_max_retries() -> int:
    return po_settings.MAX_RETRIES


def get_retry_timedelta() -> datetime.timedelta:
    """The delay before the first retry (``RETRY_INTERVAL``; later retries wait longer)."""
    return po_settings.RETRY_INTERVAL


def get_message_id_enabled() -> bool:
    return po_settings.MESSAGE_ID_ENABLED


def get_message_id_fqdn() -> str:
    return po_settings.MESSAGE_ID_FQDN


def get_batch_delivery_timeout() -> float:
    return po_settings.BATCH_DELIVERY_TIMEOUT


def get_file_storage() -> Storage:
    """The storage attachment files are kept in (``FILE_STORAGE``)."""
    return storages[po_settings.FILE_STORAGE]


def get_webhook_config(provider: str) -> dict[str, Any]:
    """``POST_OFFICE['WEBHOOKS'][provider]``, or an empty dict."""
    return dict((get_config().get("WEBHOOKS") or {}).get(provider) or {})
