"""Delivery backends by alias, and connections reused within a delivery run.

A delivery alias comes from ``POST_OFFICE['BACKENDS']`` (a dotted backend path
or, with Django 6.1, the alias of a ``MAILERS`` entry), or is itself a
``MAILERS`` alias. Each thread keeps one open connection per alias for the
whole run and reopens it after a disconnect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from .conf import is_queueing_backend, mailers, mailers_configured
from .conf import settings as po_settings
from .exceptions import DeliveryConfigurationError, UnknownBackend

DEFAULT_ALIAS = "default"
logger = logging.getLogger("post_office")


def delivery_aliases() -> set[str]:
    """Every alias an email may name in ``backend=``."""
    aliases = set(po_settings.BACKENDS)
    if mailers_configured():
        aliases.update(
            alias
            for alias, entry in mailers().items()
            if not is_queueing_backend(entry.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend"))
        )
    return aliases


def check_alias(alias: Any, field: str = "backend") -> str:
    """Return the alias to store ('' means default), or raise UnknownBackend."""
    if alias in (None, ""):
        return ""
    if not isinstance(alias, str) or alias not in delivery_aliases():
        known = ", ".join(sorted(delivery_aliases())) or "none"
        raise UnknownBackend(field, alias, f"is not a configured backend alias (known: {known})")
    return alias


def backend_factory(alias: str) -> Callable[[], BaseEmailBackend]:
    """Return a callable that creates a new connection for a delivery alias."""
    alias = alias or DEFAULT_ALIAS
    backends = po_settings.BACKENDS
    target = backends.get(alias)
    if target is None:
        if mailers_configured() and alias in mailers():
            target = alias
        elif alias == DEFAULT_ALIAS:
            raise DeliveryConfigurationError(
                "No delivery backend for the 'default' alias: set POST_OFFICE['BACKENDS']['default'] "
                "to a MAILERS alias or an email backend path."
            )
        else:
            raise DeliveryConfigurationError(f"Backend alias {alias!r} is not in POST_OFFICE['BACKENDS'].")
    if mailers_configured() and target in mailers():
        entry = mailers()[target]
        if is_queueing_backend(entry.get("BACKEND")):
            raise DeliveryConfigurationError(
                f"Delivery alias {alias!r} names MAILERS[{target!r}], which is the queueing backend itself."
            )
        from django.core.mail import mailers as django_mailers  # type: ignore[attr-defined]

        return lambda: django_mailers[target]
    if is_queueing_backend(target):
        raise DeliveryConfigurationError(
            f"POST_OFFICE['BACKENDS'][{alias!r}] is the queueing backend itself; name the backend that really sends."
        )
    try:
        backend_class = import_string(target)
    except ImportError as error:
        raise DeliveryConfigurationError(
            f"POST_OFFICE['BACKENDS'][{alias!r}]: could not import {target!r}: {error}"
        ) from error
    return backend_class


class ConnectionPool:
    """Per-thread, per-alias connections, opened once and reused for a run."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[BaseEmailBackend] = []
        self._lock = threading.Lock()

    def get(self, alias: str) -> BaseEmailBackend:
        connections = self._connections()
        connection = connections.get(alias)
        if connection is None:
            connection = backend_factory(alias)()
            connection.open()
            connections[alias] = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def discard(self, alias: str) -> None:
        """Drop this thread's connection (after an error) so the next use reopens it."""
        connection = self._connections().pop(alias, None)
        if connection is not None:
            _close_quietly(connection)
            with self._lock:
                if connection in self._all:
                    self._all.remove(connection)

    def close_all(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            _close_quietly(connection)
        self._local = threading.local()

    def _connections(self) -> dict[str, BaseEmailBackend]:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        return connections


def _close_quietly(connection: BaseEmailBackend) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real error
        logger.debug("Closing connection %r failed", connection, exc_info=True)
