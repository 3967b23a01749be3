"""A delivery backend that fails with a configurable error (for enqueue tests)."""

from django.core.mail.backends.base import BaseEmailBackend


class FailingBackend(BaseEmailBackend):
    error: BaseException = ConnectionRefusedError("connection refused")

    def send_messages(self, email_messages):
        raise self.error
