"""The long-running worker (``runmailer``), the pause switch and the heartbeat.

Most tests start the real command as a subprocess (``manage.py runmailer``)
against the test database and send it real signals; every wait has a timeout.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar
from unittest import skipUnless

from django.contrib.auth.models import User
from django.core import mail as django_mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from post_office import mail
from post_office.models import STATUS, DeliverySwitch, Email, Log, WorkerHeartbeat
from tests.helpers import queueing
from tests.smtp_sink import SMTPSink, free_port

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = connection.vendor == "postgresql"
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10, what: str = "the condition") -> T:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def queue(subject: str, **kwargs: Any) -> Email:
    kwargs.setdefault("recipients", ["to@example.com"])
    kwargs.setdefault("sender", "from@example.com")
    kwargs.setdefault("message", "body")
    return mail.send(subject=subject, **kwargs)


def statuses(*emails: Email) -> list[int]:
    by_id = dict(Email.objects.filter(pk__in=[e.pk for e in emails]).values_list("pk", "status"))
    return [by_id[e.pk] for e in emails]


class RunnerProcess:
    """``manage.py runmailer`` in a subprocess, its output in files the test can read while it runs."""

    def __init__(
        self,
        *args: str,
        options: dict[str, Any] | None = None,
        smtp_port: int | None = None,
        backend: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="po_runner_")
        self.stdout_path = Path(self.dir.name) / "stdout"
        self.stderr_path = Path(self.dir.name) / "stderr"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.runner_settings",
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
            "POST_OFFICE_TEST_OPTIONS": json.dumps(options or {}),
            **(env or {}),
        }
        if smtp_port is not None:
            self.env["POST_OFFICE_TEST_SMTP_PORT"] = str(smtp_port)
        if backend is not None:
            self.env["POST_OFFICE_TEST_BACKEND"] = backend
        self.args = [sys.executable, "manage.py", "runmailer", "--settings=tests.runner_settings", "-v2", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RunnerProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=err)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        wait_until(lambda: text in self.stderr() or self.exited(), timeout, f"log line {text!r}")
        assert text in self.stderr(), f"runmailer exited ({self.proc.returncode}):\n{self.stderr()}"

    def heartbeat(self) -> WorkerHeartbeat | None:
        return WorkerHeartbeat.objects.filter(pid=self.pid).first()

    def wait_for_state(self, state: str, timeout: float = 10) -> WorkerHeartbeat:
        def reached() -> WorkerHeartbeat | None:
            beat = self.heartbeat()
            assert not self.exited(), f"runmailer exited ({self.proc.returncode}):\n{self.stderr()}"
            return beat if beat is not None and beat.state == state else None

        return wait_until(reached, timeout, f"heartbeat state {state!r}")

    def exited(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is not None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"runmailer did not exit within {timeout}s:\n{self.stderr()}") from None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.dir.cleanup()


class RunnerTestCase(TransactionTestCase):
    def runner(self, *args: str, **kwargs: Any) -> RunnerProcess:
        process = RunnerProcess(*args, **kwargs)
        self.addCleanup(process.close)
        return process.start()

    def sink(self, port: int | None = None) -> SMTPSink:
        sink = SMTPSink(port=port).start()
        self.addCleanup(sink.stop)
        return sink

    def outbox(self) -> Path:
        """A file for SlowFileBackend's notes, removed after the test."""
        directory = tempfile.mkdtemp(prefix="po_runner_outbox_")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        return Path(directory) / "outbox"

    def stop(self, process: RunnerProcess) -> None:
        """SIGTERM: the runner must exit 0, leaving nothing claimed."""
        process.signal(signal.SIGTERM)
        self.stopped(process)

    def stopped(self, process: RunnerProcess) -> None:
        self.assertEqual(process.wait(), 0, process.stderr())
        self.assertFalse(Email.objects.filter(status=STATUS.sending).exists())
        self.assertEqual(process.heartbeat().state, "stopped")


class RunnerDeliveryTest(RunnerTestCase):
    def test_delivers_mail_queued_while_it_runs_and_stops_cleanly_on_sigterm(self):
        sink = self.sink()
        process = self.runner("--sleep=0.2", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 60})
        process.wait_for_state("idle")
        emails = mail.send_many(
            [
                {"recipients": [f"user{i}@example.com"], "sender": "from@example.com", "subject": f"live {i}"}
                for i in range(20)
            ]
        )
        wait_until(lambda: statuses(*emails) == [STATUS.sent] * 20, 15, "20 emails sent")
        self.assertEqual(sorted(m.message["Subject"] for m in sink.messages), sorted(f"live {i}" for i in range(20)))
        self.assertFalse(process.exited())

        self.stop(process)
        self.assertIn("runmailer pass: 20 sent", process.stderr())
        self.assertRegex(
            process.stdout(), r"^20 sent, 0 failed, 0 requeued, 0 expired .*; \d+ passes, 0 database errors"
        )
        beat = process.heartbeat()
        self.assertEqual((beat.sent, beat.failed, beat.requeued), (20, 0, 0))

    def test_sigterm_mid_send_finishes_the_email_in_flight_and_releases_the_rest(self):
        outbox = self.outbox()
        emails = [queue(f"slow {i}") for i in range(5)]
        process = self.runner(
            "--batch-size=5",
            backend="tests.runner_backends.SlowFileBackend",
            options={"THREADS_PER_PROCESS": 1},
            env={"POST_OFFICE_TEST_OUTBOX": str(outbox), "POST_OFFICE_TEST_SEND_DELAY": "3"},
        )
        # All five are claimed at once; one is being sent, four wait for the thread.
        wait_until(lambda: outbox.exists() and "start slow 0" in outbox.read_text(), 15, "the first send to start")

        process.signal(signal.SIGTERM)
        # The heartbeat says so while the email in flight is being finished.
        process.wait_for_state("stopping", timeout=3)
        self.stopped(process)
        self.assertEqual(outbox.read_text().splitlines(), ["start slow 0", "sent slow 0"])
        self.assertEqual(statuses(*emails), [STATUS.sent] + [STATUS.queued] * 4)
        # The four are back in the queue, unclaimed, for the next run.
        self.assertFalse(Email.objects.exclude(claimed_by="").exists())
        self.assertFalse(Email.objects.filter(lease_expires_at__isnull=False).exists())
        self.assertIn("stopping (signal SIGTERM)", process.stderr())

    def test_a_second_signal_exits_at_once(self):
        outbox = self.outbox()
        email = queue("stuck")
        process = self.runner(
            backend="tests.runner_backends.SlowFileBackend",
            env={"POST_OFFICE_TEST_OUTBOX": str(outbox), "POST_OFFICE_TEST_SEND_DELAY": "60"},
        )
        wait_until(lambda: outbox.exists() and "start stuck" in outbox.read_text(), 15, "the send to start")
        # Two different signals are never merged into one, as two SIGTERMs sent together may be.
        process.signal(signal.SIGTERM)
        process.signal(signal.SIGINT)
        returncode = process.wait(timeout=10)
        self.assertNotEqual(returncode, 0)
        self.assertIn("second signal", process.stderr())
        # The email stays claimed; its lease expires and another run sends it.
        self.assertEqual(statuses(email), [STATUS.sending])
        self.assertNotIn("sent stuck", outbox.read_text())

    def test_wakes_when_scheduled_mail_falls_due(self):
        sink = self.sink()
        due = timezone.now() + datetime.timedelta(seconds=4)
        email = queue("later", scheduled_time=due)
        process = self.runner("--sleep=60", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 60})
        # Well before EMPTY_QUEUE_SLEEP (60 s) or the next heartbeat: the runner woke for it.
        wait_until(lambda: statuses(email) == [STATUS.sent], 15, "the scheduled email to be sent")
        if process.heartbeat().started >= due:
            self.skipTest("the runner started after the email fell due (a slow machine): nothing to prove")
        self.assertGreaterEqual(Log.objects.get(email=email).date, due)
        self.stop(process)

    @skipUnless(POSTGRES, "LISTEN/NOTIFY is PostgreSQL only")
    def test_wakes_at_once_on_postgresql_notify(self):
        sink = self.sink()
        process = self.runner("--sleep=60", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 60})
        process.wait_for_state("idle")
        email = queue("notify me")  # committed at once: this test runs in autocommit mode
        # Without the notification the runner would sleep for a minute.
        wait_until(lambda: statuses(email) == [STATUS.sent], 5, "the email to be sent")
        self.assertEqual(len(sink.messages), 1)
        self.stop(process)

    def test_survives_a_dead_smtp_server(self):
        port = free_port()
        email = queue("retry me")
        process = self.runner(
            "--sleep=60",
            smtp_port=port,
            options={"RETRY_INTERVAL": 1, "MAX_RETRY_INTERVAL": 2, "MAX_RETRIES": 20, "HEARTBEAT_INTERVAL": 60},
        )
        # Nothing listens on the port: the connection fails, which is not the email's fault.
        wait_until(lambda: "Delivery through 'default' stopped" in process.stderr(), 15, "the outage to be logged")
        self.assertFalse(process.exited())
        time.sleep(2)  # a few more tries meanwhile (after 1 s, 2 s...)
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.status, stored.number_of_retries), (STATUS.queued, 0), "no attempt is counted")
        self.assertFalse(Log.objects.filter(email=email).exists())
        self.assertEqual(process.stderr().count("Delivery through 'default' stopped"), 1, "logged once, not per try")
        self.assertIn("ConnectionRefusedError", process.stderr())

        sink = self.sink(port)
        # The runner tries again after a pause that doubles (1, 2, 4... s) and now succeeds.
        wait_until(lambda: statuses(email) == [STATUS.sent], 15, "the email to be sent after the server came up")
        self.assertEqual([m.message["Subject"] for m in sink.messages], ["retry me"])
        self.stop(process)
        self.assertIn("Delivery through 'default' works again", process.stderr())
        beat = process.heartbeat()
        self.assertEqual((beat.sent, beat.requeued, beat.failed), (1, 0, 0))

    @skipUnless(POSTGRES, "needs PostgreSQL's pg_terminate_backend and ALLOW_CONNECTIONS")
    def test_survives_a_database_outage(self):
        sink = self.sink()
        process = self.runner("--sleep=60", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 60})
        process.wait_for_state("idle")
        name = connection.settings_dict["NAME"]

        def terminate(condition: str = "") -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    f" WHERE datname = %s AND pid <> pg_backend_pid() {condition}",
                    [name],
                )
                return cursor.rowcount

        # First only the LISTEN connection is lost: the runner reconnects it.
        self.assertEqual(terminate("AND query ILIKE 'LISTEN%%'"), 1)
        process.wait_for_log("Lost the LISTEN connection")
        email = queue("after losing LISTEN")
        wait_until(lambda: statuses(email) == [STATUS.sent], 5, "delivery woken by NOTIFY")

        quoted = connection.ops.quote_name(name)

        def allow_connections(allowed: bool) -> None:
            # PostgreSQL refuses this for the database one is connected to.
            import psycopg

            params = {**connection.get_connection_params(), "dbname": "postgres"}
            params.pop("cursor_factory", None)
            params.pop("context", None)
            with psycopg.connect(autocommit=True, **params) as admin:
                admin.execute(f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS {'true' if allowed else 'false'}")

        # The database "goes down": every connection but ours is ended, new ones are refused.
        allow_connections(False)
        self.addCleanup(allow_connections, True)
        self.assertGreaterEqual(terminate(), 1)
        process.wait_for_log("Database error in runmailer")
        self.assertFalse(process.exited())

        allow_connections(True)
        email = queue("after the outage")
        wait_until(lambda: statuses(email) == [STATUS.sent], 15, "delivery after the outage")
        # LISTEN was re-established: a later email wakes the runner at once, too.
        process.wait_for_state("idle")
        later = queue("later still")
        wait_until(lambda: statuses(later) == [STATUS.sent], 5, "delivery woken by NOTIFY")
        self.stop(process)
        errors = int(re.search(r"(\d+) database errors", process.stdout()).group(1))
        self.assertGreaterEqual(errors, 1)


class HeartbeatAndPauseTest(RunnerTestCase):
    def test_heartbeat_appears_and_updates(self):
        sink = self.sink()
        process = self.runner("--sleep=60", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 0.2})
        first = process.wait_for_state("idle")
        self.assertEqual(first.pid, process.pid)
        self.assertEqual(first.name, f"{first.hostname}:{process.pid}")
        wait_until(lambda: process.heartbeat().last_seen > first.last_seen, 5, "a newer heartbeat")

        email = queue("counted")
        wait_until(lambda: process.heartbeat().sent == 1, 10, "the heartbeat to count the email")
        self.assertEqual(statuses(email), [STATUS.sent])
        self.stop(process)
        beat = process.heartbeat()
        self.assertEqual((beat.state, beat.sent, beat.failed), ("stopped", 1, 0))
        self.assertEqual(beat.started, first.started)

        out = StringIO()
        call_command("mail_delivery", "status", stdout=out)
        row = next(line for line in out.getvalue().splitlines() if line.startswith(beat.name))
        self.assertEqual(row.split()[1:4], [beat.hostname, str(process.pid), "stopped"])
        self.assertIn("Delivery: running", out.getvalue())

    def test_pause_stops_delivery_but_not_enqueueing_and_resume_delivers(self):
        sink = self.sink()
        out = StringIO()
        call_command("mail_delivery", "pause", "--reason", "provider maintenance", stdout=out)
        self.assertEqual(out.getvalue().strip(), "Delivery paused.")
        process = self.runner("--sleep=0.2", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 0.2})
        process.wait_for_state("paused")

        email = queue("held")  # enqueueing goes on while paused
        self.assertEqual(email.status, STATUS.queued)
        # Two heartbeats later, the runner has looked at the queue since the email was queued.
        seen = wait_until(
            lambda: (beat := process.heartbeat()) and beat.last_seen > email.created and beat.last_seen,
            5,
            "a heartbeat",
        )
        wait_until(lambda: process.heartbeat().last_seen > seen, 5, "another heartbeat")
        self.assertEqual(statuses(email), [STATUS.queued])
        self.assertEqual(process.heartbeat().state, "paused")
        self.assertEqual(sink.messages, [])

        status = StringIO()
        call_command("mail_delivery", "status", stdout=status)
        self.assertRegex(status.getvalue(), r"Delivery: paused since .*: provider maintenance")
        self.assertRegex(status.getvalue(), rf"\b{process.pid}\s+paused\b")

        call_command("mail_delivery", "resume", stdout=out)
        wait_until(lambda: statuses(email) == [STATUS.sent], 10, "delivery after resume")
        self.assertEqual([m.message["Subject"] for m in sink.messages], ["held"])
        self.stop(process)

    def test_processes_share_the_queue_and_stop_together(self):
        sink = self.sink()
        process = self.runner("--processes=2", "--sleep=0.2", smtp_port=sink.port, options={"HEARTBEAT_INTERVAL": 60})
        wait_until(lambda: WorkerHeartbeat.objects.filter(state="idle").count() == 2, 15, "two idle runners")
        self.assertNotIn(process.pid, WorkerHeartbeat.objects.values_list("pid", flat=True))
        emails = mail.send_many(
            [{"recipients": ["to@example.com"], "sender": "from@example.com", "subject": f"p {i}"} for i in range(30)]
        )
        wait_until(lambda: statuses(*emails) == [STATUS.sent] * 30, 15, "30 emails sent")
        self.assertEqual(len(sink.messages), 30)

        process.signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0, process.stderr())
        self.assertEqual(list(WorkerHeartbeat.objects.values_list("state", flat=True)), ["stopped", "stopped"])
        self.assertEqual(sum(WorkerHeartbeat.objects.values_list("sent", flat=True)), 30)
        self.assertRegex(process.stdout(), r"^30 sent, 0 failed")


class InProcessTest(TransactionTestCase):
    """The command in this process (no signals sent): limits, options and output."""

    def test_max_passes_delivers_and_reports(self):
        handler = signal.getsignal(signal.SIGTERM)
        with queueing():
            emails = [queue(f"in process {i}") for i in range(3)]
            out = StringIO()
            call_command("runmailer", "--max-passes=1", "--sleep=0", stdout=out)
        self.assertEqual(statuses(*emails), [STATUS.sent] * 3)
        self.assertEqual(sorted(m.subject for m in django_mail.outbox), [f"in process {i}" for i in range(3)])
        self.assertRegex(out.getvalue(), r"^3 sent, 0 failed, 0 requeued, 0 expired .*; 1 passes, 0 database errors")
        beat = WorkerHeartbeat.objects.get()
        self.assertEqual((beat.state, beat.sent, beat.pid), ("stopped", 3, os.getpid()))
        # The command restored the signal handlers it installed.
        self.assertIs(signal.getsignal(signal.SIGTERM), handler)

    def test_max_seconds_stops_an_idle_runner(self):
        started = time.monotonic()
        call_command("runmailer", "--max-seconds=0.3", "--sleep=30", stdout=StringIO())
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(WorkerHeartbeat.objects.get().state, "stopped")

    def test_invalid_options(self):
        for args in (["--processes=0"], ["--max-passes=0"], ["--batch-size=0"], ["--sleep=-1"], ["--max-seconds=-1"]):
            with self.subTest(args=args), self.assertRaises(CommandError):
                call_command("runmailer", *args)


class MailDeliveryCommandTest(TestCase):
    def test_pause_resume_and_status(self):
        out = StringIO()
        call_command("mail_delivery", "status", stdout=out)
        self.assertEqual(out.getvalue().splitlines(), ["Delivery: running", "No worker heartbeats."])

        call_command("mail_delivery", "pause", "--reason", "bounce storm", stdout=StringIO())
        self.assertTrue(DeliverySwitch.is_paused())
        self.assertEqual(DeliverySwitch.objects.get().reason, "bounce storm")
        now = timezone.now()
        WorkerHeartbeat.objects.create(
            name="host-a:42", hostname="host-a", pid=42, started=now, last_seen=now, state="paused", sent=7, failed=1
        )
        out = StringIO()
        call_command("mail_delivery", "status", stdout=out)
        lines = out.getvalue().splitlines()
        self.assertRegex(lines[0], r"^Delivery: paused since .*: bounce storm$")
        self.assertEqual(
            lines[1].split(), ["worker", "host", "pid", "state", "last", "seen", "sent", "failed", "requeued"]
        )
        self.assertEqual(lines[2].split(), ["host-a:42", "host-a", "42", "paused", "0s", "ago", "7", "1", "0"])

        call_command("mail_delivery", "resume", stdout=StringIO())
        self.assertFalse(DeliverySwitch.is_paused())
        self.assertEqual(DeliverySwitch.objects.get().reason, "")

    def test_setting_pause_is_reported(self):
        with queueing(PAUSED=True):
            out, err = StringIO(), StringIO()
            call_command("mail_delivery", "status", stdout=out)
            self.assertIn("Delivery: paused (POST_OFFICE['PAUSED'] setting)", out.getvalue())
            call_command("mail_delivery", "resume", stdout=out, stderr=err)
            self.assertIn("POST_OFFICE['PAUSED'] is True", err.getvalue())

    def test_an_action_is_required(self):
        with self.assertRaises(CommandError):
            call_command("mail_delivery")


class AdminTest(TestCase):
    def setUp(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def test_heartbeats_are_listed_read_only(self):
        now = timezone.now()
        beat = WorkerHeartbeat.objects.create(
            name="host-a:42", hostname="host-a", pid=42, started=now, last_seen=now, state="idle", sent=3
        )
        response = self.client.get("/admin/post_office/workerheartbeat/")
        self.assertContains(response, "host-a:42")
        self.assertContains(response, "idle")
        self.assertEqual(self.client.get("/admin/post_office/workerheartbeat/add/").status_code, 403)
        response = self.client.post(f"/admin/post_office/workerheartbeat/{beat.pk}/change/", {"state": "x"})
        self.assertEqual(response.status_code, 403)
        beat.refresh_from_db()
        self.assertEqual(beat.state, "idle")

    def test_delivery_switch_pauses_delivery(self):
        response = self.client.post(
            "/admin/post_office/deliveryswitch/add/", {"paused": "on", "reason": "from the admin"}
        )
        self.assertEqual(response.status_code, 302)
        self.assertTrue(DeliverySwitch.is_paused())
        self.assertContains(self.client.get("/admin/post_office/deliveryswitch/"), "from the admin")
        # There is one switch: once it exists it is edited, not added again.
        self.assertEqual(self.client.get("/admin/post_office/deliveryswitch/add/").status_code, 403)
