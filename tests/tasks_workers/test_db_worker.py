"""Delivery through Django Tasks with django-tasks-db's real ``db_worker`` processes.

The test process queues mail with TASKS_ENABLED (tests.tasks_settings: the DatabaseBackend,
a queue of its own, priority 10); ``manage.py db_worker`` subprocesses run the delivery
tasks and send over SMTP to a tests.faulty_smtp process that records every arrival.
PostgreSQL and MariaDB (SQLite has a single writer and no SKIP LOCKED for the task rows).
"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time
from unittest import skipIf

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from post_office import mail
from post_office.delivery.pipeline import FLUSH_EVERY
from post_office.models import STATUS, Email, Log
from tests.helpers import db_worker_exited_in_commit
from tests.test_faults import SENDER, ProcessTestCase, arrived, wait_until

QUEUE = settings.POST_OFFICE["TASKS_QUEUE"]


@skipIf(connection.vendor == "sqlite", "task workers on PostgreSQL and MariaDB")
class DbWorkerTestCase(ProcessTestCase):
    def env(self, port: int, **extra: str) -> dict[str, str]:
        return {**super().env(port, **extra), "DJANGO_SETTINGS_MODULE": "tests.tasks_settings"}

    def start_db_worker(self, env: dict[str, str], name: str, *args: str):
        return self.spawn(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--settings=tests.tasks_settings",
                f"--queue-name={QUEUE}",
                "--interval=0.1",
                "--no-startup-delay",
                "--no-reload",
                f"--worker-id={name}",
                *args,
            ],
            env,
        )

    def queue_commits(self, total: int, per_commit: int) -> int:
        """Queue ``total`` numbered emails, ``per_commit`` in each transaction; return the number of commits."""
        commits = 0
        for start in range(0, total, per_commit):
            with transaction.atomic():
                for first in range(start, min(total, start + per_commit), 50):
                    mail.send_many(
                        [
                            {
                                "recipients": [f"u{i}@example.com"],
                                "sender": SENDER,
                                "subject": f"mail {i}",
                                "message": "b",
                            }
                            for i in range(first, min(total, start + per_commit, first + 50))
                        ]
                    )
            commits += 1
        return commits

    def commit_tasks(self) -> list[DBTaskResult]:
        return [t for t in DBTaskResult.objects.all() if not t.args_kwargs["kwargs"].get("pickup")]

    def commit_tasks_left(self) -> list[DBTaskResult]:
        return [t for t in self.commit_tasks() if t.status in ("READY", "RUNNING")]

    def holders(self) -> set[str]:
        """The workers (host:pid) holding claims now."""
        tokens = Email.objects.filter(status=STATUS.sending).values_list("claimed_by", flat=True).distinct()
        return {token.rsplit(":", 1)[0] for token in tokens}

    def stop(self, workers) -> None:
        """SIGTERM the workers; each exits 0 (or hit django-tasks-db's shutdown race: helpers)."""
        for process, _output in workers:
            process.send_signal(signal.SIGTERM)
        for process, output in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker still running 30s after SIGTERM: {output.read_text()}") from None
            text = output.read_text()
            if process.returncode != 0:
                self.assertTrue(db_worker_exited_in_commit(text), f"exited {process.returncode}:\n{text}")


class RollbackTest(DbWorkerTestCase):
    def test_a_rolled_back_transaction_leaves_no_task_and_sends_nothing(self):
        try:
            with transaction.atomic():
                mail.send_many(
                    [{"recipients": ["a@example.com"], "sender": SENDER, "subject": "no", "message": "b"}] * 5
                )
                mail.send("b@example.com", SENDER, subject="no", message="b")
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
        self.assertEqual(DBTaskResult.objects.count(), 0)
        self.assertEqual(Email.objects.count(), 0)

        # The next commit (three send() calls) is one task, run by a real worker.
        with transaction.atomic():
            for i in range(3):
                mail.send(f"u{i}@example.com", SENDER, subject=f"yes {i}", message="b")
        (task,) = DBTaskResult.objects.all()
        self.assertEqual((task.queue_name, task.priority), (QUEUE, 10))
        env = self.env(self.start_sink())
        worker = self.start_db_worker(env, "rollback", "--batch")
        self.finish([worker], timeout=60)
        self.assertEqual(arrived(self.record), {"yes 0": 1, "yes 1": 1, "yes 2": 1})
        task.refresh_from_db()
        self.assertEqual(task.status, "SUCCESSFUL")
        self.assertEqual(task.return_value, {"sent": 3, "failed": 0, "requeued": 0})


class ExactlyOnceTest(DbWorkerTestCase):
    TOTAL = 5000
    PER_COMMIT = 100

    def test_two_db_workers_deliver_5000_emails_each_once(self):
        env = self.env(self.start_sink())
        workers = [self.start_db_worker(env, f"w{n}") for n in (1, 2)]
        time.sleep(2)  # both workers up and polling before the first commit
        started = time.monotonic()
        commits = self.queue_commits(self.TOTAL, self.PER_COMMIT)
        everyone = {f"mail {i}" for i in range(self.TOTAL)}
        wait_until(lambda: len(arrived(self.record)) >= self.TOTAL, 300, "every email to arrive", step=0.2)
        elapsed = time.monotonic() - started
        wait_until(lambda: not Email.objects.exclude(status=STATUS.sent).exists(), 30, "every email recorded sent")
        wait_until(lambda: not self.commit_tasks_left(), 60, "every commit's task to finish", step=0.2)
        self.stop(workers)

        counts = arrived(self.record)
        self.assertEqual(set(counts), everyone)
        self.assertEqual(sorted(s for s, n in counts.items() if n > 1), [], "delivered more than once")
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), self.TOTAL)
        self.assertEqual(Log.objects.count(), self.TOTAL)
        # One task per commit; both workers ran some.
        self.assertEqual(len(self.commit_tasks()), commits)
        ran_by = {worker for t in DBTaskResult.objects.filter(status="SUCCESSFUL") for worker in t.worker_ids}
        self.assertEqual(ran_by, {"w1", "w2"})
        self.assertEqual(
            sum(t.return_value["sent"] for t in DBTaskResult.objects.filter(status="SUCCESSFUL")), self.TOTAL
        )
        print(  # noqa: T201 - the figure for docs/django_tasks.rst
            f"\n{connection.vendor}: {self.TOTAL} emails in {commits} commits through 2 db_worker processes: "
            f"{elapsed:.1f}s from the first commit to the last arrival ({self.TOTAL / elapsed:.0f} emails/s)"
        )


class KilledWorkerTest(DbWorkerTestCase):
    TOTAL = 1500
    LEASE_SECONDS = 2
    THREADS = 4
    DELAY_MS = 20

    def test_a_sigkilled_db_worker_loses_nothing(self):
        port = self.start_sink(delay_ms=self.DELAY_MS)
        env = self.env(
            port, POST_OFFICE_TEST_LEASE_SECONDS=str(self.LEASE_SECONDS), POST_OFFICE_TEST_THREADS=str(self.THREADS)
        )
        victim = self.start_db_worker(env, "victim")
        survivor = self.start_db_worker(env, "survivor")
        time.sleep(2)
        self.queue_commits(self.TOTAL, 250)
        wait_until(lambda: len(self.holders()) >= 2, 30, "both workers holding claims", step=0.05)
        time.sleep(0.5)
        victim[0].send_signal(signal.SIGKILL)
        victim[0].wait(timeout=10)
        killed_at = time.monotonic()
        time.sleep(2 * self.DELAY_MS / 1000 + 0.3)  # a message whose data reached the server still lands
        unrecorded = set(Email.objects.filter(status=STATUS.sending).values_list("subject", flat=True))
        in_flight = set(arrived(self.record)) & unrecorded

        everyone = {f"mail {i}" for i in range(self.TOTAL)}
        wait_until(lambda: set(arrived(self.record)) == everyone, 60, "every email after the kill", step=0.2)
        recovered = time.monotonic() - killed_at
        wait_until(lambda: Email.objects.exclude(status=STATUS.sent).count() == 0, 30, "every email recorded sent")
        self.stop([survivor])

        counts = arrived(self.record)
        duplicates = {s for s, n in counts.items() if n > 1}
        self.assertLessEqual(duplicates, in_flight, "only emails in flight at the kill may arrive twice")
        self.assertLessEqual(len(duplicates), self.THREADS + FLUSH_EVERY)
        # django-tasks-db leaves the killed worker's task RUNNING; the mail it held was delivered all the same.
        self.assertIn("victim", {w for t in DBTaskResult.objects.filter(status="RUNNING") for w in t.worker_ids})
        self.assertGreater(len(unrecorded), 0, "the worker held no claim when it was killed")
        print(  # noqa: T201 - the figure for docs/django_tasks.rst
            f"\n{connection.vendor}: db_worker killed holding {len(unrecorded)} emails ({len(in_flight)} delivered): "
            f"all {self.TOTAL} delivered {recovered:.1f}s after the kill, {len(duplicates)} twice"
        )


class LaterMailTest(DbWorkerTestCase):
    """Scheduled and retried mail is sent by the runs the tasks defer, with no commit after it."""

    def test_scheduled_and_retried_mail_is_picked_up_by_deferred_runs(self):
        env = self.env(self.start_sink(), POST_OFFICE_TEST_OPTIONS=json.dumps({"RETRY_INTERVAL": 2}))
        worker = self.start_db_worker(env, "later")
        due_at = timezone.now() + datetime.timedelta(seconds=3)
        with transaction.atomic():
            mail.send("a@example.com", SENDER, subject="scheduled", message="b", scheduled_time=due_at)
            # The server refuses the first attempt (451): requeued, retried RETRY_INTERVAL later.
            mail.send("b+451-rcpt-x1@example.com", SENDER, subject="retried", message="b")
        wait_until(lambda: set(arrived(self.record)) == {"scheduled", "retried"}, 30, "both emails", step=0.1)
        arrived_at = timezone.now()
        self.stop([worker])

        self.assertGreaterEqual(arrived_at, due_at)
        self.assertEqual(arrived(self.record), {"scheduled": 1, "retried": 1})
        retried = Email.objects.get(subject="retried")
        self.assertEqual((retried.status, retried.number_of_retries), (STATUS.sent, 1))
        self.assertEqual(Email.objects.get(subject="scheduled").status, STATUS.sent)
        # One task for the commit; the rest were deferred runs, and those sent the mail: the retried
        # email always (its first attempt was the commit task's), the scheduled one whenever the commit
        # task finished before it was due (a loaded machine can start that task late).
        (commit_task,) = self.commit_tasks()
        self.assertEqual(commit_task.status, "SUCCESSFUL")
        pickups = [t for t in DBTaskResult.objects.filter(status="SUCCESSFUL") if t.args_kwargs["kwargs"].get("pickup")]
        picked_up = sum(t.return_value["sent"] for t in pickups)
        self.assertEqual(commit_task.return_value["sent"] + picked_up, 2)
        self.assertGreaterEqual(picked_up, 2 if commit_task.finished_at < due_at else 1)
        # Deferred: django-tasks-db stores "no run_after" as the largest date.
        self.assertTrue(pickups and all(t.run_after < arrived_at + datetime.timedelta(hours=1) for t in pickups))
        self.assertGreater(commit_task.run_after, arrived_at + datetime.timedelta(days=365))
