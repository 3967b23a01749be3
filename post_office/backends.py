"""The queueing email backend: Django's mail APIs put messages on the queue.

Use it as ``EMAIL_BACKEND = 'post_office.EmailBackend'`` or, with Django 6.1,
as a ``MAILERS`` entry::

    MAILERS = {
        "default": {
            "BACKEND": "post_office.EmailBackend",
            "OPTIONS": {"priority": "high", "backend": "smtp"},
        },
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {...}},
    }

OPTIONS: ``priority`` (for every message queued through this entry) and
``backend`` (the delivery alias those messages are sent through later).

Options of one message (``priority``, ``scheduled_time``, ``expires_at``,
``backend``, ``language``) are set with :func:`queue_options`; they win over
the backend's OPTIONS. The code lives in :mod:`post_office.enqueue.backend`.
"""

from .enqueue.backend import QUEUE_OPTIONS, QUEUE_OPTIONS_ATTRIBUTE, EmailBackend, queue_options

__all__ = ["QUEUE_OPTIONS", "QUEUE_OPTIONS_ATTRIBUTE", "EmailBackend", "queue_options"]
