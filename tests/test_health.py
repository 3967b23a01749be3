"""Delivery health (issue 11, 4): the admin page, ``mail_delivery health`` and send_queued_mail's heartbeat.

The page is used through the real admin URLs, logged in as a superuser, a
view-only staff member and staff without permission; the command runs as a
subprocess, as a monitoring system would run it.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test import Client, TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from post_office import health, mail
from post_office.admin import DeliveryHealthAdmin, EmailAdmin
from post_office.delivery.heartbeat import Heartbeat, RunHeartbeat
from post_office.delivery.stats import RunStats
from post_office.models import STATUS, DeliveryHealth, DeliverySwitch, Email, Log, WorkerHeartbeat

ROOT = Path(__file__).resolve().parent.parent
PAGE = "/admin/post_office/deliveryhealth/"
PAUSE = PAGE + "pause/"
RESUME = PAGE + "resume/"

# A custom AdminSite for one test (ROOT_URLCONF = this module).
ops_site = AdminSite(name="ops")
ops_site.register(DeliveryHealth, DeliveryHealthAdmin)
ops_site.register(Email, EmailAdmin)
urlpatterns = [path("ops/", ops_site.urls), path("admin/", admin.site.urls)]


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="post_office", codename__in=codenames))
    return user


def queue(count: int = 1, **kwargs: object) -> list[Email]:
    return [
        mail.send(["customer@example.com"], "shop@example.com", subject=f"s{i}", message="m", **kwargs)
        for i in range(count)
    ]


def log(email: Email, status: int, when: datetime.datetime, exception_type: str = "", message: str = "") -> Log:
    entry = Log.objects.create(email=email, status=status, exception_type=exception_type, message=message)
    Log.objects.filter(pk=entry.pk).update(date=when)  # date is auto_now_add
    return entry


def age(email: Email, **delta: float) -> None:
    Email.objects.filter(pk=email.pk).update(created=timezone.now() - datetime.timedelta(**delta))


class HealthReportTest(TestCase):
    """The facts, computed from the models."""

    def test_counts_by_status_and_priority(self):
        queue(2, priority="high")
        queue(1, priority="low")
        sent = queue(1)[0]
        Email.objects.filter(pk=sent.pk).update(status=STATUS.sent)
        report = health.report()
        rows = {row.status: row for row in report.statuses}
        self.assertEqual([c.value for c in rows[STATUS.queued].counts], [1, 0, 2, 0])
        self.assertEqual(rows[STATUS.queued].total, health.CappedCount(3))
        self.assertEqual(rows[STATUS.sent].total.value, 1)
        self.assertEqual(str(health.CappedCount(100000, capped=True)), "100,000+")

    def test_counts_stop_at_the_cap(self):
        queue(3)
        with mock.patch.object(health, "COUNT_CAP", 2):
            row = next(r for r in health.report().statuses if r.status == STATUS.queued)
        self.assertEqual(row.total, health.CappedCount(2, capped=True))
        self.assertEqual(str(row.total), "2+")

    def test_oldest_due_ignores_future_expired_and_sent_mail(self):
        now = timezone.now()
        self.assertIsNone(health.report().oldest_due)
        queue(1, scheduled_time=now + datetime.timedelta(hours=1))  # not due
        expired = queue(1)[0]
        age(expired, hours=5)
        Email.objects.filter(pk=expired.pk).update(expires_at=now - datetime.timedelta(minutes=1))
        sent = queue(1)[0]
        age(sent, hours=9)
        Email.objects.filter(pk=sent.pk).update(status=STATUS.sent)
        self.assertIsNone(health.report().oldest_due)
        plain = queue(1)[0]
        age(plain, minutes=20)
        scheduled = queue(1, scheduled_time=now - datetime.timedelta(minutes=50))[0]
        report = health.report()
        self.assertEqual(report.oldest_due, Email.objects.get(pk=scheduled.pk).scheduled_time)
        Email.objects.filter(pk=scheduled.pk).delete()
        requeued = queue(1)[0]
        Email.objects.filter(pk=requeued.pk).update(
            status=STATUS.requeued, scheduled_time=now - datetime.timedelta(hours=2)
        )
        report = health.report()
        self.assertAlmostEqual(report.oldest_due_age.total_seconds(), 7200, delta=30)

    def test_hours_and_errors_from_the_log(self):
        email = queue(1)[0]
        now = timezone.now().replace(minute=30)  # the minutes below stay in this hour
        log(email, STATUS.sent, now)
        log(email, STATUS.sent, now - datetime.timedelta(hours=3))
        for minutes in (1, 2, 3):
            log(
                email,
                STATUS.failed,
                now - datetime.timedelta(minutes=minutes),
                "SMTPRecipientsRefused",
                "550 no such user x",
            )
        log(email, STATUS.failed, now - datetime.timedelta(minutes=4), "TimeoutError", "timed out")
        log(email, STATUS.failed, now - datetime.timedelta(hours=30), "Old", "too old to count")
        report = health.report(now)
        self.assertEqual(len(report.hours), 24)
        self.assertEqual((report.hours[-1].sent, report.hours[-1].failed), (1, 4))
        self.assertEqual(sum(bar.sent for bar in report.hours), 2)
        self.assertEqual(sum(bar.failed for bar in report.hours), 4)
        self.assertEqual(
            [(e.exception_type, e.message, e.count) for e in report.errors],
            [("SMTPRecipientsRefused", "550 no such user x", 3), ("TimeoutError", "timed out", 1)],
        )
        self.assertEqual(report.errors[0].last_seen, Log.objects.filter(message__startswith="550").latest("date").date)

    def test_stuck(self):
        now = timezone.now()
        report = health.report(now)
        limits = datetime.timedelta(minutes=30), datetime.timedelta(minutes=10)
        self.assertEqual(report.stuck(*limits), {})  # nothing due: nothing stuck, even with no worker
        email = queue(1)[0]
        self.assertEqual(health.report(now).stuck(*limits), {"silence": None})
        RunHeartbeat("send_queued_mail").write("finished")
        self.assertEqual(health.report().stuck(*limits), {})
        age(email, hours=1)
        WorkerHeartbeat.objects.update(last_seen=now - datetime.timedelta(minutes=11))
        found = health.report().stuck(*limits)
        self.assertEqual(set(found), {"age", "silence"})
        self.assertEqual(len(health.stuck_reasons(health.report(), *limits)), 2)

    def test_a_report_costs_five_queries_however_many_rows(self):
        health.report()
        with self.assertNumQueries(5):
            health.report()
        queue(30)
        for email in Email.objects.all()[:10]:
            log(email, STATUS.failed, timezone.now(), "E", "m")
        RunHeartbeat("send_queued_mail").write("finished")
        with self.assertNumQueries(5):
            health.report()


class HealthPageTest(TestCase):
    """The admin page, as each kind of staff member sees it."""

    def setUp(self) -> None:
        self.admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(self.admin)

    def test_linked_from_the_index_and_the_email_list(self):
        index = self.client.get("/admin/").content.decode()
        self.assertIn(f'href="{PAGE}"', index)
        self.assertIn("Delivery health", index)
        emails = self.client.get("/admin/post_office/email/").content.decode()
        self.assertRegex(emails, rf'<a href="{PAGE}" id="delivery-health-link">Delivery health</a>')

    def test_shows_every_fact(self):
        email = queue(2, priority="high")[0]
        age(email, hours=2)
        log(email, STATUS.failed, timezone.now(), "SMTPServerDisconnected", "Connection unexpectedly closed")
        log(email, STATUS.sent, timezone.now())
        RunHeartbeat("send_queued_mail").write("finished")
        response = self.client.get(PAGE)
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "admin/post_office/health.html")
        content = response.content.decode()
        for element in (
            "health-delivery-state",
            "health-running",
            "health-pause-form",
            "health-oldest-due",
            "health-counts-table",
            "health-chart-svg",
            "health-errors-table",
            "health-workers-table",
        ):
            self.assertIn(f'id="{element}"', content)
        self.assertIn("Waiting for 2\xa0hours", content)
        row = re.search(r'<tr id="health-count-2">(.*?)</tr>', content, re.S).group(1)
        self.assertEqual(re.findall(r"<td[^>]*>(?:<a[^>]*>)?(\d+)", row), ["0", "0", "2", "0", "2"])
        self.assertIn("/admin/post_office/email/?status__exact=2&amp;priority__exact=2", content)
        self.assertIn("SMTPServerDisconnected", content)
        self.assertIn("Connection unexpectedly closed", content)
        self.assertIn("send_queued_mail@", content)
        self.assertIn("finished", content)
        # The chart: 48 bars, each with a <title>; the last hour has one of each.
        self.assertEqual(len(re.findall(r'<rect id="health-bar-(?:sent|failed)-\d+"', content)), 48)
        self.assertRegex(content, r'id="health-bar-sent-23"[^>]*data-value="1"><title>[^<]*1 email sent</title>')
        self.assertRegex(content, r'id="health-bar-failed-23"[^>]*data-value="1"><title>[^<]*1 failed attempt</title>')
        self.assertNotIn("health-chart-incomplete", content)
        # Due for two hours: an alert; but a worker ran just now, so no silence alert.
        self.assertIn("The oldest due email has waited 2\xa0hours", content)
        self.assertNotIn("no worker", content)

    def test_alerts_when_mail_is_stuck(self):
        email = queue(1)[0]
        content = self.client.get(PAGE).content.decode()
        self.assertIn('id="health-alerts"', content)
        self.assertIn("no worker has ever written a heartbeat", content)
        age(email, hours=2)
        RunHeartbeat("send_queued_mail").write("finished")
        WorkerHeartbeat.objects.update(last_seen=timezone.now() - datetime.timedelta(hours=1))
        content = self.client.get(PAGE).content.decode()
        self.assertIn("The oldest due email has waited 2\xa0hours, more than 30 minutes.", content)
        self.assertIn("no worker has run for 1\xa0hour (more than 10 minutes)", content)

    @override_settings(POST_OFFICE={**settings.POST_OFFICE, "LOG_LEVEL": 1})
    def test_says_when_the_chart_is_incomplete(self):
        content = self.client.get(PAGE).content.decode()
        self.assertIn('id="health-chart-incomplete"', content)
        self.assertIn("only failed attempts are logged", content)

    def test_runmailer_that_went_silent(self):
        WorkerHeartbeat.objects.create(
            name="host:1",
            hostname="host",
            pid=1,
            started=timezone.now() - datetime.timedelta(hours=1),
            last_seen=timezone.now() - datetime.timedelta(minutes=5),
            state="idle",
        )
        content = self.client.get(PAGE).content.decode()
        self.assertIn("runmailer (long-running)", content)
        self.assertIn("idle (not heard from)", content)

    def test_pause_and_resume(self):
        response = self.client.post(PAUSE, {"reason": "provider maintenance"}, follow=True)
        self.assertRedirects(response, PAGE)
        self.assertTrue(DeliverySwitch.is_paused())
        self.assertEqual(DeliverySwitch.objects.get().reason, "provider maintenance")
        content = response.content.decode()
        self.assertIn('id="health-paused"', content)
        self.assertIn("provider maintenance", content)
        self.assertIn('id="health-resume-form"', content)
        self.assertNotIn('id="health-pause-form"', content)
        with mock.patch("post_office.admin.health.notify_queued") as notify:
            response = self.client.post(RESUME, follow=True)
        notify.assert_called_once_with()
        self.assertFalse(DeliverySwitch.is_paused())
        self.assertIn("Delivery resumed.", response.content.decode())
        self.assertEqual(LogEntry.objects.filter(user=self.admin).count(), 2)  # who switched, in the history

    def test_a_get_changes_nothing_and_the_reason_has_a_limit(self):
        self.assertEqual(self.client.get(PAUSE).status_code, 405)
        self.assertEqual(self.client.get(RESUME).status_code, 405)
        self.assertFalse(DeliverySwitch.is_paused())
        self.client.post(PAUSE, {"reason": "x" * 300})
        self.assertFalse(DeliverySwitch.is_paused())

    def test_csrf_is_required(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.admin)
        self.assertEqual(client.post(PAUSE, {"reason": "r"}).status_code, 403)
        self.assertFalse(DeliverySwitch.is_paused())

    def test_view_only_staff_sees_the_page_but_cannot_pause(self):
        self.client.force_login(staff("viewer", "view_email", "view_deliveryswitch"))
        self.assertIn(f'href="{PAGE}"', self.client.get("/admin/").content.decode())
        response = self.client.get(PAGE)
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        self.assertNotIn('id="health-pause-form"', content)
        self.assertNotIn('id="health-resume-form"', content)
        self.assertEqual(self.client.post(PAUSE, {"reason": "r"}).status_code, 403)
        DeliverySwitch.set_paused(True, "by someone else")
        self.assertNotIn('id="health-resume-form"', self.client.get(PAGE).content.decode())
        self.assertEqual(self.client.post(RESUME).status_code, 403)
        self.assertTrue(DeliverySwitch.is_paused())

    def test_switch_permission_gives_the_buttons(self):
        self.client.force_login(staff("operator", "view_email", "change_deliveryswitch"))
        self.assertIn('id="health-pause-form"', self.client.get(PAGE).content.decode())
        self.client.post(PAUSE, {"reason": "r"})
        self.assertTrue(DeliverySwitch.is_paused())

    def test_staff_without_permission_is_refused(self):
        self.client.force_login(staff("nobody"))
        self.assertEqual(self.client.get(PAGE).status_code, 403)
        self.assertNotIn(PAGE, self.client.get("/admin/").content.decode())
        self.client.force_login(staff("switcher", "change_deliveryswitch"))  # no view on emails
        self.assertEqual(self.client.get(PAGE).status_code, 403)

    def test_query_count_does_not_grow_with_rows(self):
        self.client.get(PAGE)  # warm caches (content types, session)
        with CaptureQueriesContext(connection) as empty:
            self.client.get(PAGE)
        queue(40, priority="low")
        for index, email in enumerate(Email.objects.all()[:20]):
            log(email, STATUS.failed, timezone.now() - datetime.timedelta(hours=index), f"E{index}", "m")
            log(email, STATUS.sent, timezone.now() - datetime.timedelta(hours=index))
        for index in range(5):
            RunHeartbeat(f"send_queued_mail{index}").write("finished")
        # Session, user, the report's five queries and the nav sidebar's (DeliverySwitchAdmin.has_add_permission).
        with self.assertNumQueries(len(empty.captured_queries)):
            self.client.get(PAGE)
        self.assertEqual(len(empty.captured_queries), 8, [q["sql"][:80] for q in empty.captured_queries])


@override_settings(ROOT_URLCONF=__name__)
class CustomAdminSiteTest(TestCase):
    def test_the_page_works_on_a_custom_admin_site(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        page = "/ops/post_office/deliveryhealth/"
        self.assertIn(f'href="{page}"', self.client.get("/ops/").content.decode())
        self.assertIn(
            f'<a href="{page}" id="delivery-health-link">', self.client.get("/ops/post_office/email/").content.decode()
        )
        content = self.client.get(page).content.decode()
        self.assertIn('action="/ops/post_office/deliveryhealth/pause/"', content)
        self.assertIn('href="/ops/post_office/email/"', content)
        self.assertIn('href="/ops/"', content)  # breadcrumbs
        response = self.client.post(page + "pause/", {"reason": "r"})
        self.assertRedirects(response, page)
        self.assertTrue(DeliverySwitch.is_paused())


class SendQueuedMailHeartbeatTest(TestCase):
    """send_queued_mail writes one row per host with what its last run did."""

    def test_each_run_replaces_the_row_with_its_own_figures(self):
        queue(2)
        call_command("send_queued_mail", verbosity=0)
        beat = WorkerHeartbeat.objects.get()
        self.assertEqual(beat.name, f"send_queued_mail@{socket.gethostname()}")
        self.assertEqual((beat.state, beat.sent, beat.failed, beat.requeued), ("finished", 2, 0, 0))
        self.assertEqual(beat.pid, os.getpid())
        first_seen = beat.last_seen
        call_command("send_queued_mail", verbosity=0)
        beat = WorkerHeartbeat.objects.get()  # still one row
        self.assertEqual((beat.state, beat.sent), ("finished", 0))
        self.assertGreaterEqual(beat.last_seen, first_seen)

    def test_a_run_that_raises_is_recorded_as_failed(self):
        queue(1)
        with mock.patch(
            "post_office.management.commands.send_queued_mail.run_processes", side_effect=RuntimeError("boom")
        ):
            with self.assertRaises(RuntimeError):
                call_command("send_queued_mail", verbosity=0)
        self.assertEqual(WorkerHeartbeat.objects.get().state, "failed")

    def test_a_long_run_keeps_its_row_fresh_with_its_figures(self):
        beat = RunHeartbeat("send_queued_mail", interval=0)
        seen = []
        with beat.running():
            self.assertEqual(WorkerHeartbeat.objects.get().state, "running")
            beat.progress(seen.append)(RunStats(sent=3, failed=1))
            row = WorkerHeartbeat.objects.get()
            self.assertEqual((row.state, row.sent, row.failed), ("running", 3, 1))
        self.assertEqual(len(seen), 1)
        self.assertEqual(WorkerHeartbeat.objects.get().state, "finished")

    def test_a_database_error_on_the_row_does_not_stop_delivery(self):
        queue(1)
        with mock.patch.object(Heartbeat, "beat", side_effect=DatabaseError("locked")):
            with self.assertLogs("post_office", "WARNING"):
                call_command("send_queued_mail", verbosity=0)
        self.assertEqual(Email.objects.get().status, STATUS.sent)


class HealthCommandTest(TransactionTestCase):
    """``manage.py mail_delivery health`` as monitoring runs it: a subprocess and its exit status."""

    def run_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
        }
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    def test_healthy(self):
        result = self.run_command("mail_delivery", "health")
        self.assertEqual(result.returncode, 0, result.stderr)  # nothing due: healthy, even before any worker ran
        self.assertIn("Oldest due email: none", result.stdout)
        queue(2, priority="high")
        sent = self.run_command("send_queued_mail")
        self.assertEqual(sent.returncode, 0, sent.stderr)
        queue(1)
        result = self.run_command("mail_delivery", "health")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Delivery: running", result.stdout)
        self.assertRegex(result.stdout, r"queued\s+0\s+1\s+0\s+0\s+1")
        self.assertRegex(result.stdout, r"sent\s+0\s+0\s+2\s+0\s+2")
        self.assertIn("Last 24 hours: 2 sent, 0 failed attempts", result.stdout)
        self.assertRegex(
            result.stdout, rf"send_queued_mail@{re.escape(socket.gethostname())}\s+send_queued_mail\s+finished"
        )
        self.assertIn("OK: mail is moving.", result.stdout)

    def test_stuck(self):
        email = queue(1)[0]
        result = self.run_command("mail_delivery", "health")
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("no worker has ever run while mail is due", result.stderr)
        RunHeartbeat("send_queued_mail").write("finished")
        age(email, hours=2)
        result = self.run_command("mail_delivery", "health")
        self.assertEqual(result.returncode, 2)
        self.assertIn("Mail is stuck: the oldest due email has waited 2h 00m (more than 30m 00s)", result.stderr)
        self.assertEqual(self.run_command("mail_delivery", "health", "--max-age", "180").returncode, 0)
        WorkerHeartbeat.objects.update(last_seen=timezone.now() - datetime.timedelta(minutes=20))
        result = self.run_command("mail_delivery", "health", "--max-age", "180")
        self.assertEqual(result.returncode, 2)
        self.assertIn("no worker has run for 20m", result.stderr)
        self.assertEqual(
            self.run_command("mail_delivery", "health", "--max-age", "180", "--max-silence", "30").returncode, 0
        )

    def test_thresholds_from_the_settings_and_bad_values(self):
        email = queue(1)[0]
        age(email, minutes=45)
        RunHeartbeat("send_queued_mail").write("finished")
        out, err = StringIO(), StringIO()
        with self.assertRaises(CommandError) as raised:
            call_command("mail_delivery", "health", stdout=out, stderr=err)
        self.assertEqual(raised.exception.returncode, 2)
        with self.settings(POST_OFFICE={**settings.POST_OFFICE, "HEALTH_MAX_AGE": 60}):
            call_command("mail_delivery", "health", stdout=out)
        result = self.run_command("mail_delivery", "health", "--max-age", "0")
        self.assertEqual(result.returncode, 1)
        self.assertIn("must be more than 0 minutes", result.stderr)
