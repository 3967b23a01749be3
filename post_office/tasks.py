"""Task-queue integration: a Celery task that runs a delivery pass.

With ``POST_OFFICE['CELERY_ENABLED'] = True`` every commit that queues email
triggers the ``send_queued_mail`` task, as in django-post_office.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from .conf import settings as po_settings
from .delivery.heartbeat import RunHeartbeat
from .delivery.worker import Worker
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
    send_queued_mail = None
else:

    @shared_task(name="post_office.tasks.send_queued_mail", ignore_result=True)
    def send_queued_mail() -> dict[str, int]:
        return run_delivery()


@receiver(email_queued, dispatch_uid="post_office.tasks.trigger_celery")
def trigger_celery(sender: type[Email], emails: list[Email], **kwargs: Any) -> None:
    if po_settings.CELERY_ENABLED and send_queued_mail is not None:
        send_queued_mail.delay()
