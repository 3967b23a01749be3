"""Delivery health: the facts the admin's health page and ``mail_delivery health`` report.

A report is five queries, however many rows there are. The email table is
read only through its indexes and in bounded ranges: counts by status and
priority are capped (each reads at most ``COUNT_CAP`` entries of the queue
index) and the oldest due email is the first entry of each (status, priority)
range. The hourly chart and the recent errors read the Log rows of the last
24 hours through its ``date`` index, so they cost in proportion to one day's
attempts, never to the whole log (measured on PostgreSQL: about 1 s for
2 million attempts a day, a few ms for 10,000). Workers and errors are limited.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import Substr, TruncHour
from django.utils import timezone

from .choices import CLAIMABLE, PRIORITY, STATUS
from .conf import settings as po_settings
from .models import DeliverySwitch, Email, Log, WorkerHeartbeat

__all__ = ["COUNT_CAP", "CappedCount", "ErrorGroup", "HealthReport", "HourBar", "StatusRow", "WorkerRun", "report"]

#: A count by status and priority stops at this many rows (shown as "100,000+").
COUNT_CAP = 100_000
#: Hours in the sent / failed chart.
CHART_HOURS = 24
#: Error groups shown, the most frequent first.
ERRORS_SHOWN = 10
#: Errors are grouped by exception type and the first this many characters of the message.
ERROR_PREFIX = 100
#: Worker rows shown, the most recently seen first.
WORKERS_SHOWN = 20
#: The heartbeat names of one-pass runs start with these (``RunHeartbeat``); the others are runmailer's.
ONE_PASS_COMMANDS = ("send_queued_mail", "celery", "django_tasks")
#: Heartbeat states after which a worker writes nothing more.
FINAL_STATES = ("stopped", "crashed", "finished", "failed")


@dataclass(frozen=True)
class CappedCount:
    """A count that stopped at a cap: ``capped`` means "at least ``value``"."""

    value: int
    capped: bool = False

    def __add__(self, other: CappedCount) -> CappedCount:
        return CappedCount(self.value + other.value, self.capped or other.capped)

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


@dataclass(frozen=True)
class StatusRow:
    status: int
    label: str
    #: One per priority, in ``PRIORITY`` order.
    counts: list[CappedCount]

    @property
    def total(self) -> CappedCount:
        return sum(self.counts, CappedCount(0))


@dataclass(frozen=True)
class HourBar:
    start: datetime.datetime
    end: datetime.datetime
    sent: int
    failed: int


@dataclass(frozen=True)
class ErrorGroup:
    exception_type: str
    message: str
    count: int
    last_seen: datetime.datetime


@dataclass(frozen=True)
class WorkerRun:
    name: str
    hostname: str
    pid: int
    state: str
    started: datetime.datetime
    last_seen: datetime.datetime
    sent: int
    failed: int
    requeued: int
    #: Seconds since its last sign of life.
    age: float
    #: 'send_queued_mail' (a one-pass run: its figures are its last run's) or 'runmailer' (since it started).
    kind: str
    #: A runmailer that should have written its heartbeat by now and did not (it may be dead).
    silent: bool


@dataclass
class HealthReport:
    now: datetime.datetime
    statuses: list[StatusRow]
    #: When the oldest due email (queued, due, not expired) fell due; None when nothing is due.
    oldest_due: datetime.datetime | None
    hours: list[HourBar]
    errors: list[ErrorGroup]
    workers: list[WorkerRun]
    paused: bool
    paused_by_setting: bool
    pause_reason: str
    paused_since: datetime.datetime | None
    #: POST_OFFICE['LOG_LEVEL']: below 2 sent attempts are not logged, below 1 nothing is.
    log_level: int
    priorities: list[tuple[int, str]] = field(default_factory=lambda: [(v, str(n)) for v, n in PRIORITY.choices])

    @property
    def oldest_due_age(self) -> datetime.timedelta | None:
        return None if self.oldest_due is None else max(self.now - self.oldest_due, datetime.timedelta(0))

    @property
    def last_worker_seen(self) -> datetime.datetime | None:
        """The last sign of life of any worker (runmailer or a one-pass run)."""
        return max((worker.last_seen for worker in self.workers), default=None)

    @property
    def silence(self) -> datetime.timedelta | None:
        """How long no worker has been seen (None: no worker ever wrote a heartbeat)."""
        seen = self.last_worker_seen
        return None if seen is None else max(self.now - seen, datetime.timedelta(0))

    @property
    def chart_logs_sent(self) -> bool:
        return self.log_level >= 2

    @property
    def chart_logs_failed(self) -> bool:
        return self.log_level >= 1

    def stuck(
        self, max_age: datetime.timedelta, max_silence: datetime.timedelta
    ) -> dict[str, datetime.timedelta | None]:
        """Why mail is stuck: ``{'age': ...}`` and/or ``{'silence': ...}`` (None: no worker ever ran); empty if not."""
        found: dict[str, datetime.timedelta | None] = {}
        age = self.oldest_due_age
        if age is None:
            return found  # nothing is due: nothing can be stuck
        if age > max_age:
            found["age"] = age
        silence = self.silence
        if silence is None or silence > max_silence:
            found["silence"] = silence
        return found


def report(now: datetime.datetime | None = None) -> HealthReport:
    """Gather the delivery health facts (five queries, however many emails and logs there are)."""
    now = now or timezone.now()
    statuses, oldest_due = _queue_snapshot(now)
    switch = DeliverySwitch.objects.filter(name="delivery").first()
    by_setting = po_settings.PAUSED
    return HealthReport(
        now=now,
        statuses=statuses,
        oldest_due=oldest_due,
        hours=_hours(now),
        errors=_errors(now),
        workers=_workers(now),
        paused=by_setting or bool(switch and switch.paused),
        paused_by_setting=by_setting,
        pause_reason=switch.reason if switch is not None and switch.paused else "",
        paused_since=switch.changed if switch is not None and switch.paused else None,
        log_level=po_settings.LOG_LEVEL,
    )


def _queue_snapshot(now: datetime.datetime) -> tuple[list[StatusRow], datetime.datetime | None]:
    """Capped counts per (status, priority) and when the oldest due email fell due, in one query.

    Each part is a subquery the queue index (status, priority, scheduled_time)
    answers with a bounded range: a count reads at most COUNT_CAP entries; the
    oldest scheduled email is the first entry of its range; the oldest
    unscheduled one is the lowest id (ids grow with ``created``) of its range.
    """
    emails = Email.objects.order_by()
    parts: list[tuple[str, QuerySet[Any]]] = []
    for status in STATUS.values:
        for priority in PRIORITY.values:
            parts.append(("count", emails.filter(status=status, priority=priority).values("pk")[:COUNT_CAP]))
    not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    for status in CLAIMABLE:
        for priority in PRIORITY.values:
            same = emails.filter(not_expired, status=status, priority=priority)
            parts.append(("time", same.filter(scheduled_time__isnull=True).order_by("pk").values("created")[:1]))
            parts.append(
                ("time", same.filter(scheduled_time__lte=now).order_by("scheduled_time").values("scheduled_time")[:1])
            )
    values = _select_scalars(parts)
    counts = iter(values[: len(STATUS.values) * len(PRIORITY.values)])
    rows = [
        StatusRow(status, str(label), [_capped(next(counts)) for _ in PRIORITY.values])
        for status, label in STATUS.choices
    ]
    times = [value for value in values[len(STATUS.values) * len(PRIORITY.values) :] if value is not None]
    return rows, min(times, default=None)


def _capped(value: int) -> CappedCount:
    return CappedCount(value, capped=value >= COUNT_CAP)


def _select_scalars(parts: list[tuple[str, QuerySet[Any]]]) -> list[Any]:
    """Run the given querysets as scalar subqueries of one SELECT: a count of each 'count', the value of each 'time'."""
    using = router.db_for_read(Email)
    connection = connections[using]
    selects, params = [], []
    for index, (kind, queryset) in enumerate(parts):
        sql, part_params = queryset.query.get_compiler(using=using).as_sql()
        if kind == "count":
            # Only SQL compiled by the ORM (values are in params) and a quoted alias of ours.
            sql = f"SELECT COUNT(*) FROM ({sql}) {connection.ops.quote_name(f'part{index}')}"  # noqa: S608
        selects.append(f"({sql})")
        params.extend(part_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(selects), params)
        row = cursor.fetchone()
    # A raw cursor returns datetimes as the driver gives them (text on SQLite, naive on MySQL): convert as the ORM does.
    column = Email._meta.get_field("created").get_col(Email._meta.db_table)
    converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
    values = []
    for (kind, _queryset), value in zip(parts, row, strict=True):
        if kind == "time" and value is not None:
            for converter in converters:
                value = converter(value, column, connection)
        values.append(int(value) if kind == "count" else value)
    return values


def _hours(now: datetime.datetime) -> list[HourBar]:
    """Sent and failed attempts per hour of the last CHART_HOURS hours (the Log's date index), in one query.

    Hours are whole UTC hours (the same as local hours in every time zone with
    a whole-hour offset); the query reads every Log row of the period once.
    """
    current = now.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    starts = [current - datetime.timedelta(hours=CHART_HOURS - 1 - index) for index in range(CHART_HOURS)]
    counts: dict[tuple[datetime.datetime, int], int] = {}
    rows = (
        Log.objects.order_by()
        .filter(date__gte=starts[0], date__lte=now, status__in=(STATUS.sent, STATUS.failed))
        .annotate(hour=TruncHour("date", tzinfo=datetime.UTC))
        .values_list("hour", "status")
        .annotate(count=Count("pk"))
    )
    for hour, status, count in rows:
        counts[hour.astimezone(datetime.UTC), status] = count
    return [
        HourBar(
            start,
            start + datetime.timedelta(hours=1),
            counts.get((start, STATUS.sent), 0),
            counts.get((start, STATUS.failed), 0),
        )
        for start in starts
    ]


def _errors(now: datetime.datetime) -> list[ErrorGroup]:
    """The most frequent failed attempts of the last 24 hours, by exception type and message prefix."""
    rows = (
        Log.objects.order_by()
        .filter(status=STATUS.failed, date__gte=now - datetime.timedelta(hours=CHART_HOURS))
        .annotate(prefix=Substr("message", 1, ERROR_PREFIX))
        .values("exception_type", "prefix")
        .annotate(count=Count("pk"), last_seen=Max("date"))
        .order_by("-count", "-last_seen")[:ERRORS_SHOWN]
    )
    return [ErrorGroup(row["exception_type"], row["prefix"], row["count"], row["last_seen"]) for row in rows]


def _workers(now: datetime.datetime) -> list[WorkerRun]:
    silent_after = 3 * po_settings.HEARTBEAT_INTERVAL
    runs = []
    for beat in WorkerHeartbeat.objects.order_by("-last_seen", "name")[:WORKERS_SHOWN]:
        age = max((now - beat.last_seen).total_seconds(), 0.0)
        kind = next((c for c in ONE_PASS_COMMANDS if beat.name.startswith(f"{c}@")), "runmailer")
        silent = kind == "runmailer" and beat.state not in FINAL_STATES and age > silent_after
        runs.append(
            WorkerRun(
                name=beat.name,
                hostname=beat.hostname,
                pid=beat.pid,
                state=beat.state,
                started=beat.started,
                last_seen=beat.last_seen,
                sent=beat.sent,
                failed=beat.failed,
                requeued=beat.requeued,
                age=age,
                kind=kind,
                silent=silent,
            )
        )
    return runs


def duration_text(delta: datetime.timedelta | None) -> str:
    """A short English duration for command output: '45s', '12m 05s', '2h 05m', '3d 04h'."""
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def stuck_reasons(report: HealthReport, max_age: datetime.timedelta, max_silence: datetime.timedelta) -> list[str]:
    """Why mail is stuck, in English (empty when it is not): the command's verdict."""
    found = report.stuck(max_age, max_silence)
    reasons = []
    if "age" in found:
        reasons.append(
            f"the oldest due email has waited {duration_text(found['age'])} (more than {duration_text(max_age)})"
        )
    if "silence" in found:
        silence = found["silence"]
        reasons.append(
            "no worker has ever run while mail is due"
            if silence is None
            else f"no worker has run for {duration_text(silence)} (more than {duration_text(max_silence)}) while mail is due"
        )
    return reasons


def text_lines(report: HealthReport) -> list[str]:
    """The report as plain English lines (``mail_delivery health``)."""
    lines = [_pause_line(report), "", f"Emails by status and priority (a count stops at {COUNT_CAP:,}):"]
    table = [["status", *(str(label) for _value, label in report.priorities), "total"]]
    table += [[row.label, *(str(count) for count in row.counts), str(row.total)] for row in report.statuses]
    lines += _columns(table)
    age = report.oldest_due_age
    lines += ["", "Oldest due email: none" if age is None else f"Oldest due email: waiting {duration_text(age)}"]
    sent, failed = sum(bar.sent for bar in report.hours), sum(bar.failed for bar in report.hours)
    lines += ["", f"Last {CHART_HOURS} hours: {sent:,} sent, {failed:,} failed attempts (from the delivery log)"]
    if not report.chart_logs_failed:
        lines.append("  LOG_LEVEL 0: attempts are not logged, so these counts are incomplete.")
    elif not report.chart_logs_sent:
        lines.append("  LOG_LEVEL 1: sent attempts are not logged, so the sent count is incomplete.")
    busy = [bar for bar in report.hours if bar.sent or bar.failed]
    table = [["hour", "sent", "failed"]]
    table += [[f"{timezone.localtime(bar.start):%Y-%m-%d %H:00}", f"{bar.sent:,}", f"{bar.failed:,}"] for bar in busy]
    lines += _columns(table, indent="  ") if busy else []
    lines += ["", f"Most frequent errors (last {CHART_HOURS} hours):" if report.errors else "No errors logged."]
    for error in report.errors:
        when = f"{timezone.localtime(error.last_seen):%Y-%m-%d %H:%M:%S}"
        lines.append(f"  {error.count:>6,} x {error.exception_type or '-'}: {error.message} (last {when})")
    lines.append("")
    if not report.workers:
        lines.append("Workers: no heartbeat yet (neither runmailer nor send_queued_mail has run).")
        return lines
    lines.append(f"Workers (the {WORKERS_SHOWN} seen last):")
    table = [["worker", "kind", "state", "last seen", "sent", "failed", "requeued"]]
    for worker in report.workers:
        state = f"{worker.state} (silent)" if worker.silent else worker.state
        ago = f"{duration_text(datetime.timedelta(seconds=worker.age))} ago"
        table.append([worker.name, worker.kind, state, ago, str(worker.sent), str(worker.failed), str(worker.requeued)])
    return lines + _columns(table, indent="  ")


def _pause_line(report: HealthReport) -> str:
    if report.paused_by_setting:
        return "Delivery: paused (POST_OFFICE['PAUSED'] setting)"
    if report.paused:
        since = f" since {timezone.localtime(report.paused_since):%Y-%m-%d %H:%M:%S %Z}" if report.paused_since else ""
        return f"Delivery: paused{since}" + (f": {report.pause_reason}" if report.pause_reason else "")
    return "Delivery: running"


def _columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]
