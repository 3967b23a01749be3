"""Django Tasks: delivery as a task of ``django.tasks`` (Django 6.0+) or of the django-tasks backport (5.2).

With ``POST_OFFICE['TASKS_ENABLED'] = True`` every commit that queued mail enqueues one
``post_office.django_tasks.send_queued_mail`` task (after the commit, never before; one per
commit, however many emails it queued), on the backend, queue and priority the settings name.
The task runs one delivery pass through the claim engine, so any number of task workers on any
number of hosts send each email once; the email rows stay the source of truth and this app's
retry policy applies. When the pass leaves mail for later (scheduled, retried after a backoff,
held by a worker that may have died, or due while delivery is paused), the task defers one more
run to that time on backends that support ``run_after``.

Nothing here touches the task framework at import time. A ``@task`` at module level is validated
against the project's default backend when its module is imported (its queue, its priority), so
the task object is built when it is first used, with the configured backend, queue and priority.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import threading
from types import ModuleType
from typing import Any

from django.core import checks
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Min
from django.dispatch import receiver
from django.utils import timezone

from .choices import STATUS
from .conf import settings as po_settings
from .delivery.heartbeat import RunHeartbeat
from .delivery.worker import Worker
from .models import Email
from .signals import queue_committed

logger = logging.getLogger("post_office")

#: The task's import path, as task workers find it.
TASK_PATH = "post_office.django_tasks.send_queued_mail"
#: The heartbeat rows of task runs are ``django_tasks@<host>``.
HEARTBEAT_NAME = "django_tasks"
#: A run deferred to a lease's end starts this long after it, so the lease has surely expired.
LEASE_MARGIN = datetime.timedelta(seconds=1)


def framework() -> ModuleType:
    """``django.tasks`` (Django 6.0+), else the django-tasks backport; ImproperlyConfigured when neither exists."""
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImproperlyConfigured(
        "POST_OFFICE['TASKS_ENABLED'] needs Django's task framework: Django 6.0 or later, or the "
        "django-tasks backport on Django 5.2 (pip install 'django-post-office-ng[tasks]')."
    )


def backend() -> Any:
    """The task backend named by ``TASKS_BACKEND``."""
    return framework().task_backends[po_settings.TASKS_BACKEND]


def delivery_task(run_after: datetime.datetime | None = None) -> Any:
    """The delivery task on the configured backend, queue and priority (validated by the backend now)."""
    task_class = importlib.import_module(f"{framework().__name__}.base").Task
    return task_class(
        func=_deliver,
        backend=po_settings.TASKS_BACKEND,
        queue_name=po_settings.TASKS_QUEUE,
        priority=po_settings.TASKS_PRIORITY,
        run_after=run_after,
    )


def send_queued_mail(pickup: bool = False) -> dict[str, int]:
    """One delivery pass with a ``django_tasks@<host>`` heartbeat row; then defer a run for the mail it left.

    ``pickup`` is True in the runs this task defers itself (shown in the backend's results).
    """
    with RunHeartbeat(HEARTBEAT_NAME).running() as heartbeat:
        heartbeat.stats = stats = Worker(on_progress=heartbeat.progress()).run()
    if po_settings.TASKS_ENABLED:
        schedule_pickup()
    return {"sent": stats.sent, "failed": stats.failed, "requeued": stats.requeued}


# The task framework finds a task by its function's module and name, and that name must be the
# task object: the function goes by its task's name, and this module's __getattr__ builds the
# task when the name is looked up (on first use, never at import).
_deliver = send_queued_mail
del send_queued_mail


def __getattr__(name: str) -> Any:
    if name == "send_queued_mail":
        return delivery_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@receiver(queue_committed, dispatch_uid="post_office.django_tasks.trigger")
def trigger(sender: Any, **kwargs: Any) -> None:
    """Enqueue the delivery task once a transaction that queued mail commits (``TASKS_ENABLED``).

    A failure to enqueue is logged and not raised: the transaction has committed, the mail is
    safely queued and the next task run, deferred run or ``send_queued_mail`` delivers it.
    """
    if not po_settings.TASKS_ENABLED:
        return
    try:
        delivery_task().enqueue()
    except Exception:  # noqa: BLE001 - the caller's commit is done; never fail it afterwards
        logger.exception("Could not enqueue the post_office delivery task; the mail stays queued.")


# -- deferred runs -----------------------------------------------------------------------------


def next_pickup(now: datetime.datetime | None = None) -> datetime.datetime | None:
    """When a run should look at the queue again, or None when nothing waits.

    The earliest of: the next scheduled (or retried) email's time; the end of the first lease of an
    email some worker holds (if that worker died, its emails are due then); and, when due mail is
    left (delivery paused, a server down), EMPTY_QUEUE_SLEEP from now.
    """
    now = now or timezone.now()
    times = []
    scheduled = (
        Email.objects.queued()
        .filter(scheduled_time__gt=now)
        .exclude(expires_at__lte=now)
        .aggregate(first=Min("scheduled_time"))["first"]
    )
    if scheduled is not None:
        times.append(scheduled)
    lease = Email.objects.filter(status=STATUS.sending).aggregate(first=Min("lease_expires_at"))["first"]
    if lease is not None:
        times.append(max(lease, now) + LEASE_MARGIN)
    if Email.objects.due(now).exists():
        times.append(now + datetime.timedelta(seconds=po_settings.EMPTY_QUEUE_SLEEP))
    return min(times) if times else None


def schedule_pickup(now: datetime.datetime | None = None) -> datetime.datetime | None:
    """Defer one run to :func:`next_pickup` on a backend that supports ``run_after``; return its time.

    Runs that end together compute the same time; one run is deferred per time (per process,
    and across processes through a shared cache), so deferred runs do not multiply.
    """
    if not backend().supports_defer:
        return None
    now = now or timezone.now()
    when = next_pickup(now)
    if when is None:
        return None
    when = when.replace(microsecond=0) + datetime.timedelta(seconds=1)  # whole seconds: one slot per second
    if not _take_slot(when, now):
        return None
    try:
        delivery_task(run_after=when).enqueue(pickup=True)
    except Exception:
        _release_slot(when)
        raise
    return when


_slots: dict[str, datetime.datetime] = {}
_slots_lock = threading.Lock()


def _slot_key(when: datetime.datetime) -> str:
    return f"post_office:tasks:pickup:{po_settings.TASKS_BACKEND}:{po_settings.TASKS_QUEUE}:{when.isoformat()}"


def _shared_cache() -> Any:
    """Django's default cache when other processes see it (not a per-process or dummy cache), else None."""
    try:
        cache = caches["default"]
    except Exception:  # noqa: BLE001 - no usable cache: dedupe within this process only
        return None
    return None if isinstance(cache, (LocMemCache, DummyCache)) else cache


def _take_slot(when: datetime.datetime, now: datetime.datetime) -> bool:
    """True when no run was deferred to ``when`` yet (by this process, or by any through the shared cache)."""
    key = _slot_key(when)
    with _slots_lock:
        for old in [k for k, at in _slots.items() if at < now]:
            del _slots[old]
        if key in _slots:
            return False
        _slots[key] = when
    cache = _shared_cache()
    if cache is None:
        return True
    try:
        return bool(cache.add(key, 1, timeout=max(60, (when - now).total_seconds() + 60)))
    except Exception:  # noqa: BLE001 - a cache outage costs duplicate runs, not lost mail
        logger.warning("Could not use the cache to dedupe deferred post_office runs.", exc_info=True)
        return True


def _release_slot(when: datetime.datetime) -> None:
    key = _slot_key(when)
    with _slots_lock:
        _slots.pop(key, None)
    cache = _shared_cache()
    if cache is not None:
        try:
            cache.delete(key)
        except Exception:  # noqa: BLE001
            logger.warning("Could not free a deferred run's slot in the cache.", exc_info=True)


# -- system checks -------------------------------------------------------------------------------


@checks.register("post_office")
def check_tasks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E050-E051, W050-W051: the task framework and the backend TASKS_ENABLED delivers through."""
    try:
        if not po_settings.TASKS_ENABLED:
            return []
        framework()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="post_office.E050")]
    try:
        delivery_task()
        chosen = backend()
    except Exception as error:  # noqa: BLE001 - whatever the backend refuses, say it here and not at commit time
        text = str(error)
        if not isinstance(error, ImproperlyConfigured):  # the settings were read: name them
            text = (
                f"The post_office delivery task cannot be enqueued on task backend {po_settings.TASKS_BACKEND!r}, "
                f"queue {po_settings.TASKS_QUEUE!r}, priority {po_settings.TASKS_PRIORITY!r}: {error}"
            )
        hint = "Set POST_OFFICE['TASKS_BACKEND'], ['TASKS_QUEUE'] and ['TASKS_PRIORITY'] to what TASKS accepts."
        return [checks.Error(text, hint=hint, id="post_office.E051")]
    messages: list[checks.CheckMessage] = []
    name = type(chosen).__name__
    if isinstance(chosen, importlib.import_module(f"{framework().__name__}.backends.immediate").ImmediateBackend):
        messages.append(
            checks.Warning(
                f"Task backend {po_settings.TASKS_BACKEND!r} ({name}) runs tasks at once, in the process that "
                "enqueues them: mail would be delivered inside the web request that queued it.",
                hint="Configure a backend with workers in TASKS (e.g. django_tasks_db.DatabaseBackend and its "
                "db_worker), or leave TASKS_ENABLED off and run send_queued_mail or runmailer.",
                id="post_office.W050",
            )
        )
    if not chosen.supports_defer:
        messages.append(
            checks.Warning(
                f"Task backend {po_settings.TASKS_BACKEND!r} ({name}) cannot defer tasks (run_after): scheduled "
                "and retried mail, and mail a dead worker held, wait for the next commit that queues mail.",
                hint="Use a backend that supports run_after, or also run send_queued_mail periodically (cron).",
                id="post_office.W051",
            )
        )
    return messages
