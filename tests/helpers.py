"""Settings overrides that work the same on Django 5.2 (EMAIL_BACKEND) and 6.1 (MAILERS)."""

from __future__ import annotations

from typing import Any

import django
from django.test import override_settings

DJANGO_61 = django.VERSION >= (6, 1)
SMTP = "django.core.mail.backends.smtp.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
QUEUE = "post_office.EmailBackend"


def queueing(**post_office: Any) -> override_settings:
    """Route Django's mail APIs into the queue; deliver to locmem (``mail.outbox``)."""
    if DJANGO_61:
        return override_settings(
            MAILERS={"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": LOCMEM}},
            POST_OFFICE={"BACKENDS": {"default": "smtp"}, **post_office},
        )
    return override_settings(EMAIL_BACKEND=QUEUE, POST_OFFICE={"BACKENDS": {"default": LOCMEM}, **post_office})


def delivering_to(sink: Any, credentials: tuple[str, str] | None = None, **post_office: Any) -> override_settings:
    """Deliver queued mail over SMTP to an SMTPSink on 127.0.0.1 (logging in with ``credentials``)."""
    options = sink.backend_options()
    username, password = credentials or ("", "")
    if DJANGO_61:
        if credentials:
            options = {**options, "username": username, "password": password}
        return override_settings(
            MAILERS={"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": SMTP, "OPTIONS": options}},
            POST_OFFICE={"BACKENDS": {"default": "smtp"}, **post_office},
        )
    return override_settings(
        EMAIL_BACKEND=QUEUE,
        EMAIL_HOST=options["host"],
        EMAIL_PORT=options["port"],
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_TIMEOUT=options["timeout"],
        EMAIL_HOST_USER=username,
        EMAIL_HOST_PASSWORD=password,
        POST_OFFICE={"BACKENDS": {"default": SMTP}, **post_office},
    )


class QueueTestMixin:
    """Delivery tests: POST_OFFICE['BACKENDS'] set to ``backends`` for each test, and a short ``queue()``."""

    backends: dict[str, str] = {}

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        settings = self.settings(POST_OFFICE={"BACKENDS": self.backends})  # type: ignore[attr-defined]
        settings.enable()
        self.addCleanup(settings.disable)  # type: ignore[attr-defined]

    def po(self, **extra: Any) -> override_settings:
        """Override POST_OFFICE keys on top of the test backends."""
        return self.settings(POST_OFFICE={"BACKENDS": self.backends, **extra})  # type: ignore[attr-defined]

    def queue(self, subject: str, **kwargs: Any) -> Any:
        from post_office import mail

        kwargs.setdefault("recipients", ["to@example.com"])
        kwargs.setdefault("sender", "from@example.com")
        kwargs.setdefault("message", f"body of {subject}")
        return mail.send(subject=subject, **kwargs)


def db_worker_exited_in_commit(output: str) -> bool:
    """Whether a ``db_worker`` that exited 1 after SIGTERM only hit django-tasks-db's shutdown race.

    Its signal handler calls ``sys.exit(0)`` wherever the worker is when it is idle; when that is
    inside the COMMIT of its own polling transaction, the SystemExit breaks the COMMIT and the
    process ends with 1. That transaction is django-tasks-db's task poll: no email row is in it.
    """
    return "in shutdown" in output and "SystemExit: 0" in output and "_commit_gen" in output
