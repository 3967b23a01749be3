"""django-post_office's ``connections``: one open connection per delivery alias and thread.

``connections["ses"]`` is an open connection of the backend behind the
delivery alias ``ses`` (``POST_OFFICE['BACKENDS']``, or a ``MAILERS`` alias),
the same object each time in one thread; ``connections.close()`` closes this
thread's connections. Delivery itself uses its own pool
(:mod:`post_office.transport.connections`); this is for projects that send
through the configured backends themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from django.core.mail.backends.base import BaseEmailBackend

from .exceptions import DeliveryConfigurationError
from .transport.connections import backend_factory, delivery_aliases

__all__ = ["ConnectionHandler", "connections"]


class ConnectionHandler:
    """Open connections by delivery alias, one of each per thread."""

    def __init__(self) -> None:
        self._connections = threading.local()

    def _opened(self) -> dict[str, BaseEmailBackend]:
        opened = getattr(self._connections, "connections", None)
        if opened is None:
            opened = self._connections.connections = {}
        return opened

    def __getitem__(self, alias: str) -> BaseEmailBackend:
        """The open connection of ``alias`` in this thread; KeyError for an alias that is not configured."""
        opened = self._opened()
        if alias in opened:
            return opened[alias]
        if alias != "default" and alias not in delivery_aliases():
            raise KeyError(f"{alias} is not a valid backend alias")
        try:
            connection = backend_factory(alias)()
        except DeliveryConfigurationError as error:
            raise KeyError(f"{alias} is not a valid backend alias: {error}") from error
        connection.open()
        opened[alias] = connection
        return connection

    def all(self) -> Iterable[BaseEmailBackend]:
        """This thread's open connections."""
        return list(self._opened().values())

    def close(self) -> None:
        """Close this thread's connections; the next lookup opens a new one."""
        opened = self._opened()
        connections = list(opened.values())
        opened.clear()
        errors = []
        for connection in connections:
            try:
                connection.close()
            except Exception as error:  # noqa: BLE001 - close them all, then report the first failure
                errors.append(error)
        if errors:
            raise errors[0]


#: The connections of the current thread, by delivery alias.
connections = ConnectionHandler()
