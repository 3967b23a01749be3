"""Celery integration: delivery tasks triggered once per commit, and periodic tasks for beat.

With ``POST_OFFICE['CELERY_ENABLED'] = True`` every transaction that queues
email triggers one task once it commits (``queue_committed``), never before and
never for a rollback: ``send_priority_mail`` on ``CELERY_PRIORITY_QUEUE`` for
its high-priority emails, ``send_queued_mail`` on ``CELERY_QUEUE`` for the
rest. Both claim through the delivery engine, so any number of workers on any
number of hosts send each email once; no lock file is involved.
``priority='now'`` mail is still delivered by the process that queued it, at
commit. :func:`beat_schedule` is the periodic side: retries and scheduled mail,
lease recovery, cleanup and Log purging (docs/celery.rst).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from .conf import settings as po_settings
from .delivery.claim import requeue_stale_leases
from .delivery.heartbeat import RunHeartbeat
from .delivery.worker import Worker
from .maintenance import cleanup_expired_mails, cutoff_for_days, purge_logs
from .models import Email
from .signals import queue_committed

logger = logging.getLogger("post_office")

#: High-priority emails claimed and recorded together by ``send_priority_mail`` (a crash re-sends at most these).
PRIORITY_CHUNK = 50


def run_delivery() -> dict[str, int]:
    """One delivery pass, as the ``send_queued_mail`` command runs it, with its ``celery@<host>`` heartbeat row."""
    with RunHeartbeat("celery").running() as heartbeat:
        heartbeat.stats = stats = Worker(on_progress=heartbeat.progress()).run()
    return {"sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued}


def deliver_ids(ids: list[int]) -> dict[str, int]:
    """Deliver these emails if they are still queued and due, ``PRIORITY_CHUNK`` at a time."""
    worker = Worker()
    with RunHeartbeat("celery").running() as heartbeat:
        for start in range(0, len(ids), PRIORITY_CHUNK):
            heartbeat.stats = worker.deliver_ids(ids[start : start + PRIORITY_CHUNK])
    stats = worker.stats
    return {"sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued}


def more_than_a_batch_due() -> bool:
    """True when a pass has more than one batch to claim: worth a second task for an idle worker."""
    batch = po_settings.BATCH_SIZE
    return bool(Email.objects.due().values_list("id", flat=True)[batch : batch + 1])


def task_options(*, priority: bool = False) -> dict[str, Any]:
    """``apply_async`` options of a triggered task: CELERY_TASK_OPTIONS and the queue."""
    options = po_settings.CELERY_TASK_OPTIONS
    queue = po_settings.CELERY_PRIORITY_QUEUE if priority else po_settings.CELERY_QUEUE
    if queue:
        options["queue"] = queue
    return options


# Every task is ``acks_late`` and ``reject_on_worker_lost``: a task whose worker dies
# (SIGKILL, OOM, a lost host) goes back to the broker and runs again elsewhere. That is
# safe because a delivery task only sends what its own claim took: running it twice, or
# while another worker still holds some emails, never re-sends what another worker holds
# (a claim takes queued rows only, each under its own token). The emails the dead worker
# held come back when their lease runs out (``recover_leases``), not by the redelivery.
# The cleanup tasks delete in batches and only finished mail, so a rerun is harmless too.
TASK_OPTIONS: dict[str, Any] = {"ignore_result": True, "acks_late": True, "reject_on_worker_lost": True}

try:
    from celery import shared_task
except ImportError:  # Celery is an optional extra.
    send_queued_mail = send_priority_mail = recover_leases = cleanup_mail = purge_mail_log = None
else:

    @shared_task(name="post_office.tasks.send_queued_mail", bind=True, **TASK_OPTIONS)
    def send_queued_mail(self: Any, *args: Any, **kwargs: Any) -> dict[str, int]:
        """One delivery pass (arguments are accepted and ignored, as django-post_office's task did).

        With more than a batch due, it first queues one more pass, so an idle
        worker joins in; each copy claims its own batches. Each pass queues at
        most one, so the passes waiting in the broker never outnumber those running.
        """
        if not self.request.is_eager and more_than_a_batch_due():
            self.apply_async(**task_options())
        return run_delivery()

    @shared_task(name="post_office.tasks.send_priority_mail", **TASK_OPTIONS)
    def send_priority_mail(ids: list[int], *args: Any, **kwargs: Any) -> dict[str, int]:
        """Deliver the high-priority emails one commit queued (those no other worker took first)."""
        return deliver_ids([int(pk) for pk in ids])

    @shared_task(name="post_office.tasks.recover_leases", bind=True, **TASK_OPTIONS)
    def recover_leases(self: Any, *args: Any, **kwargs: Any) -> int:
        """Put back the emails of workers that died (their lease ran out); start a pass when there were any."""
        count = requeue_stale_leases()
        if count:
            self.app.tasks["post_office.tasks.send_queued_mail"].apply_async(**task_options())
        return count

    @shared_task(name="post_office.tasks.cleanup_mail", **TASK_OPTIONS)
    def cleanup_mail(*args: Any, days: int = 90, delete_attachments: bool = True, **kwargs: Any) -> dict[str, int]:
        """``cleanup_mail --days`` as a task: sent, failed and cancelled mail older than ``days`` is deleted."""
        emails, attachments = cleanup_expired_mails(cutoff_for_days(days), delete_attachments=delete_attachments)
        return {"emails": emails, "attachments": attachments}

    @shared_task(name="post_office.tasks.purge_mail_log", **TASK_OPTIONS)
    def purge_mail_log(*args: Any, days: int = 90, result: str = "success", **kwargs: Any) -> int:
        """``purge_mail_log DAYS --result`` as a task: Log rows older than ``days`` days are deleted."""
        return purge_logs(days, result)


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The periodic tasks for Celery beat, on CELERY_QUEUE: ``app.conf.beat_schedule.update(beat_schedule())``.

    Retries and scheduled mail every minute, lease recovery every 15 seconds,
    cleanup (90 days) and the Log purge (successful attempts, 30 days) daily.
    """
    options = task_options()
    return {
        "post_office.send_queued_mail": {
            "task": "post_office.tasks.send_queued_mail",
            "schedule": 60.0,
            "options": options,
        },
        "post_office.recover_leases": {
            "task": "post_office.tasks.recover_leases",
            "schedule": 15.0,
            "options": options,
        },
        "post_office.cleanup_mail": {
            "task": "post_office.tasks.cleanup_mail",
            "schedule": 24 * 3600.0,
            "kwargs": {"days": 90},
            "options": options,
        },
        "post_office.purge_mail_log": {
            "task": "post_office.tasks.purge_mail_log",
            "schedule": 24 * 3600.0,
            "kwargs": {"days": 30, "result": "success"},
            "options": options,
        },
    }


@receiver(queue_committed, dispatch_uid="post_office.tasks.trigger_celery")
def trigger_celery(
    sender: type[Email],
    count: int = 0,
    by_priority: dict[str, int] | None = None,
    high: list[int] | None = None,
    **kwargs: Any,
) -> None:
    """Once a transaction that queued email committed: the tasks that deliver it, when ``CELERY_ENABLED``.

    Its high-priority emails go to CELERY_PRIORITY_QUEUE by id; the rest (or
    more than 1000 high-priority emails) start a pass on CELERY_QUEUE.
    ``priority='now'`` emails need neither: the queueing process sends them.
    A broker that cannot be reached is logged, not raised: the emails are
    committed, and the periodic pass picks them up.
    """
    if not po_settings.CELERY_ENABLED or send_queued_mail is None:
        return
    by_priority = by_priority or {}
    rest = count - by_priority.get("high", 0) - by_priority.get("now", 0)
    try:
        if high:
            send_priority_mail.apply_async(args=(high,), **task_options(priority=True))
        if rest > 0 or (high is None and by_priority.get("high")):
            send_queued_mail.apply_async(**task_options())
    except Exception as error:  # noqa: BLE001 - the commit is done; nothing may be raised into the caller
        logger.error("Could not start the Celery delivery task (the mail stays queued): %s", error, exc_info=True)


def queued_mail_handler(sender: type[Email], **kwargs: Any) -> None:
    """django-post_office's ``email_queued`` receiver: start a delivery pass when ``CELERY_ENABLED``.

    Not connected: the trigger above runs once per commit. Connect it to
    ``email_queued`` yourself and each ``send()`` starts one more pass (harmless:
    passes claim, so nothing is sent twice).
    """
    if po_settings.CELERY_ENABLED and send_queued_mail is not None:
        send_queued_mail.apply_async(**task_options())
