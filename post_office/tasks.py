"""Task-queue integration: a Celery task that runs a delivery pass.

With ``POST_OFFICE['CELERY_ENABLED'] = True`` every commit that queues email
triggers the ``send_queued_mail`` task, as in django-post_office;
``cleanup_mail`` is its periodic cleanup task (for Celery beat).
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from .conf import settings as po_settings
from .delivery.heartbeat import RunHeartbeat
from .delivery.worker import Worker
from .maintenance import cleanup_expired_mails, cutoff_for_days
from .models import Email
from .signals import email_queued


def run_delivery() -> dict[str, int]:
    """One delivery pass, as the ``send_queued_mail`` command runs it, with its ``celery@<host>`` heartbeat row."""
    with RunHeartbeat("celery").running() as heartbeat:
        heartbeat.stats = stats = Worker(on_progress=heartbeat.progress()).run()
    return {"sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued}


try:
    from celery import shared_task
except ImportError:  # Celery is an optional extra.
    send_queued_mail = cleanup_mail = None
else:

    @shared_task(name="post_office.tasks.send_queued_mail", ignore_result=True)
    def send_queued_mail(*args: Any, **kwargs: Any) -> dict[str, int]:
        """One delivery pass (arguments are accepted and ignored, as django-post_office's task did)."""
        return run_delivery()

    @shared_task(name="post_office.tasks.cleanup_mail", ignore_result=True)
    def cleanup_mail(*args: Any, days: int = 90, delete_attachments: bool = True, **kwargs: Any) -> dict[str, int]:
        """``cleanup_mail --days`` as a task: sent, failed and cancelled mail older than ``days`` is deleted."""
        emails, attachments = cleanup_expired_mails(cutoff_for_days(days), delete_attachments=delete_attachments)
        return {"emails": emails, "attachments": attachments}


@receiver(email_queued, dispatch_uid="post_office.tasks.trigger_celery")
def trigger_celery(sender: type[Email], emails: list[Email] | None = None, **kwargs: Any) -> None:
    """Start the delivery task when ``CELERY_ENABLED`` (the signal is sent once the emails are committed)."""
    if po_settings.CELERY_ENABLED and send_queued_mail is not None:
        send_queued_mail.delay()


#: django-post_office's name for the receiver (connected already; connect it again and it runs twice).
queued_mail_handler = trigger_celery
