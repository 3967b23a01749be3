"""Delivery backends by alias, and connections reused within a delivery run.

A delivery alias comes from ``POST_OFFICE['BACKENDS']`` (a dotted backend path
or, with Django 6.1, the alias of a ``MAILERS`` entry), or is itself a
``MAILERS`` alias. Delivery threads share a capped pool of open connections
per alias, reused for the whole run and reopened after a disconnect.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.utils.module_loading import import_string

from ..conf import is_queueing_backend, mail_passwords, mailers, mailers_configured
from ..conf import settings as po_settings
from ..exceptions import DeliveryConfigurationError, UnknownBackend
from .failures import ConnectionFailed
from .smtp import EmailBackend as SMTPBackend

DEFAULT_ALIAS = "default"
DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
logger = logging.getLogger("post_office")


def delivery_aliases() -> set[str]:
    """Every alias an email may name in ``backend=``."""
    aliases = set(po_settings.BACKENDS)
    if mailers_configured():
        aliases.update(
            alias for alias, entry in mailers().items() if not is_queueing_backend(entry.get("BACKEND", DJANGO_SMTP))
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
        if _is_django_smtp(entry.get("BACKEND", DJANGO_SMTP)):
            # Django's SMTP backend with this entry's OPTIONS, as mailers[target] would make it.
            return functools.partial(SMTPBackend, alias=target, **entry.get("OPTIONS", {}))
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
    if backend_class is DjangoSMTPBackend:
        # The same backend, able to send stored emails without rebuilding them (transport.smtp).
        return SMTPBackend
    return backend_class


def _is_django_smtp(path: str) -> bool:
    try:
        return import_string(path) is DjangoSMTPBackend
    except ImportError:
        return False  # reported when the connection is made


def accepts_wire(alias: str) -> bool:
    """True when the alias's backend sends serialised stored emails (a ``WireBackend``, see message.wire)."""
    factory = backend_factory(alias)
    backend_class = factory.func if isinstance(factory, functools.partial) else factory
    return callable(getattr(backend_class, "send_wire", None))


class ConnectionPool:
    """Open connections per delivery alias, shared by a process's delivery threads.

    A thread checks a connection out for one send and back in afterwards, so a
    connection is never used by two threads at once; connections stay open for
    the whole run. At most ``limit(alias)`` connections per alias are open at
    once (POST_OFFICE['MAX_CONNECTIONS'], by default one per delivery thread);
    a thread that finds them all busy waits for one.
    """

    def __init__(self, default_limit: int | None = None) -> None:
        self.default_limit = default_limit or po_settings.THREADS_PER_PROCESS
        self._condition = threading.Condition()
        self._idle: dict[str, list[BaseEmailBackend]] = {}
        self._open: dict[str, int] = {}
        self._all: list[BaseEmailBackend] = []
        self._wire: dict[str, bool] = {}

    def accepts_wire(self, alias: str) -> bool:
        """Whether ``alias``'s connections take ``send_wire`` (remembered for the pool's life)."""
        known = self._wire.get(alias)
        if known is None:
            known = self._wire[alias] = accepts_wire(alias)
        return known

    def limit(self, alias: str) -> int:
        return po_settings.max_connections(alias) or self.default_limit

    @contextmanager
    def connection(self, alias: str) -> Iterator[BaseEmailBackend]:
        """Check out an open connection for ``alias``; a failed send discards it."""
        connection = self._checkout(alias)
        try:
            yield connection
        except BaseException:
            # The connection may be broken (disconnect, timeout): the next use reopens.
            self._discard(alias, connection)
            raise
        else:
            with self._condition:
                self._idle.setdefault(alias, []).append(connection)
                self._condition.notify()

    def _checkout(self, alias: str) -> BaseEmailBackend:
        with self._condition:
            while True:
                idle = self._idle.setdefault(alias, [])
                if idle:
                    return idle.pop()
                if self._open.get(alias, 0) < self.limit(alias):
                    self._open[alias] = self._open.get(alias, 0) + 1
                    break
                self._condition.wait()
        connection = None
        try:
            connection = backend_factory(alias)()
            if getattr(connection, "timeout", 0) is None:
                # A stalled server must not hold a delivery thread forever.
                connection.timeout = po_settings.SEND_TIMEOUT  # type: ignore[attr-defined]
            connection.open()
        except BaseException as error:
            with self._condition:
                self._open[alias] -= 1
                self._condition.notify()
            # A wrong alias, a refused connection, a failed login: not the email's
            # fault, so the emails stay queued (transport.failures).
            raise ConnectionFailed(alias, error, mail_passwords(getattr(connection, "password", None))) from error
        with self._condition:
            self._all.append(connection)
        return connection

    def _discard(self, alias: str, connection: BaseEmailBackend) -> None:
        _close_quietly(connection)
        with self._condition:
            self._open[alias] -= 1
            if connection in self._all:
                self._all.remove(connection)
            self._condition.notify()

    def close_all(self) -> None:
        with self._condition:
            connections, self._all = self._all, []
            self._idle, self._open = {}, {}
        for connection in connections:
            _close_quietly(connection)


class GivenConnection:
    """A pool of one: a connection the caller opened (``Email.dispatch(connection=...)``), never closed here."""

    def __init__(self, connection: BaseEmailBackend) -> None:
        self._connection = connection

    def accepts_wire(self, alias: str) -> bool:
        return callable(getattr(self._connection, "send_wire", None))

    @contextmanager
    def connection(self, alias: str) -> Iterator[BaseEmailBackend]:
        yield self._connection

    def close_all(self) -> None:
        """The caller's connection stays open: the caller closes it."""


def _close_quietly(connection: BaseEmailBackend) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real error
        logger.debug("Closing connection %r failed", connection, exc_info=True)
