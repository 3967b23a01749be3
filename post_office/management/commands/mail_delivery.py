"""Pause, resume or inspect delivery: ``mail_delivery pause [--reason TEXT] | resume | status | health``."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from post_office import health
from post_office.conf import settings as po_settings
from post_office.models import DeliverySwitch, WorkerHeartbeat
from post_office.notify import notify_queued


class Command(BaseCommand):
    help = "Pause or resume delivery for every worker (enqueueing goes on), or show workers' heartbeats."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        pause = actions.add_parser("pause", help="Stop delivery; queued mail waits.")
        pause.add_argument("--reason", default="", help="Shown by 'status' and in the admin.")
        actions.add_parser("resume", help="Deliver again.")
        actions.add_parser("status", help="Show whether delivery is paused, and the workers' heartbeats.")
        check = actions.add_parser("health", help="Show the delivery health; exit with 2 when mail is stuck.")
        check.add_argument("--max-age", type=float, help="Minutes the oldest due email may wait (HEALTH_MAX_AGE).")
        check.add_argument(
            "--max-silence", type=float, help="Minutes with no worker run while mail is due (HEALTH_MAX_SILENCE)."
        )

    def handle(self, *args: str, **options: Any) -> None:
        action = options["action"]
        if action in ("pause", "resume"):
            DeliverySwitch.set_paused(action == "pause", options.get("reason", ""))
            if action == "resume":
                notify_queued()  # wakes PostgreSQL workers now instead of after EMPTY_QUEUE_SLEEP
            self.stdout.write(f"Delivery {'paused' if action == 'pause' else 'resumed'}.")
            if action == "resume" and po_settings.PAUSED:
                self.stderr.write("POST_OFFICE['PAUSED'] is True: delivery stays paused until that setting changes.")
            return
        if action == "health":
            self._health(options["max_age"], options["max_silence"])
            return
        switch = DeliverySwitch.objects.filter(name="delivery").first()
        if po_settings.PAUSED:
            self.stdout.write("Delivery: paused (POST_OFFICE['PAUSED'] setting)")
        elif switch is not None and switch.paused:
            reason = f": {switch.reason}" if switch.reason else ""
            self.stdout.write(f"Delivery: paused since {switch.changed:%Y-%m-%d %H:%M:%S %Z}{reason}")
        else:
            self.stdout.write("Delivery: running")
        rows = [("worker", "host", "pid", "state", "last seen", "sent", "failed", "requeued")]
        now = timezone.now()
        for beat in WorkerHeartbeat.objects.order_by("-last_seen"):
            age = f"{(now - beat.last_seen).total_seconds():.0f}s ago"
            counters = (str(beat.sent), str(beat.failed), str(beat.requeued))
            rows.append((beat.name, beat.hostname, str(beat.pid), beat.state, age, *counters))
        if len(rows) == 1:
            self.stdout.write("No worker heartbeats.")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def _health(self, max_age: float | None, max_silence: float | None) -> None:
        limits = [
            po_settings.HEALTH_MAX_AGE if max_age is None else max_age,
            po_settings.HEALTH_MAX_SILENCE if max_silence is None else max_silence,
        ]
        if min(limits) <= 0:
            raise CommandError("--max-age and --max-silence must be more than 0 minutes")
        max_age_delta, max_silence_delta = (datetime.timedelta(minutes=limit) for limit in limits)
        report = health.report()
        for line in health.text_lines(report):
            self.stdout.write(line)
        reasons = health.stuck_reasons(report, max_age_delta, max_silence_delta)
        if reasons:
            raise CommandError("Mail is stuck: " + "; ".join(reasons) + ".", returncode=2)
        self.stdout.write("\nOK: mail is moving.")
