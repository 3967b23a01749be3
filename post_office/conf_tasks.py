"""The Django Tasks settings (``post_office.django_tasks``; docs/django_tasks.rst), part of ``post_office.conf``.

:class:`post_office.conf.PostOfficeSettings` inherits them (read them as ``po_settings.TASKS_QUEUE``).
The delivery task is enqueued with the backend, queue and priority named here, and only
validated by the backend when it is used, never when a module is imported.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

TASKS_KEYS = ("TASKS_ENABLED", "TASKS_BACKEND", "TASKS_QUEUE", "TASKS_PRIORITY")


class TasksSettings:
    """POST_OFFICE's Django Tasks keys."""

    def _get(self, key: str, default: Any) -> Any:
        raise NotImplementedError  # PostOfficeSettings reads POST_OFFICE

    @property
    def TASKS_ENABLED(self) -> bool:
        """Enqueue a Django Tasks delivery task once each transaction that queued email commits: False."""
        return bool(self._get("TASKS_ENABLED", False))

    @property
    def TASKS_BACKEND(self) -> str:
        """The alias in ``TASKS`` of the backend the delivery task is enqueued on: ``'default'``."""
        return _name("TASKS_BACKEND", self._get("TASKS_BACKEND", "default"))

    @property
    def TASKS_QUEUE(self) -> str:
        """The queue of the delivery task (one of that backend's ``QUEUES``): ``'default'``."""
        return _name("TASKS_QUEUE", self._get("TASKS_QUEUE", "default"))

    @property
    def TASKS_PRIORITY(self) -> int:
        """The priority of the delivery task, a whole number from -100 to 100 (where the backend has priorities): 0."""
        value = self._get("TASKS_PRIORITY", 0)
        if type(value) is not int or not -100 <= value <= 100:
            raise ImproperlyConfigured(
                f"POST_OFFICE['TASKS_PRIORITY'] must be a whole number from -100 to 100, not {value!r}."
            )
        return value


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ImproperlyConfigured(f"POST_OFFICE[{key!r}] must be a non-empty name, not {value!r}.")
    return value
