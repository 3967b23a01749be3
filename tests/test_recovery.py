"""A dead worker's emails come back in seconds; a live but slow one keeps its claim.

Real ``send_queued_mail`` processes deliver over SMTP to a tests.faulty_smtp
process that answers each message after a delay, like a remote server, and
records every arrival in a file (written before its reply).
"""

from __future__ import annotations

import random
import signal
import time

from django.db import connection
from django.utils import timezone

from post_office.delivery import Worker
from post_office.delivery.pipeline import FLUSH_EVERY
from post_office.models import STATUS, Email
from tests.test_faults import ProcessTestCase, arrived, wait_until


class DeadWorkerTest(ProcessTestCase):
    """The issue's target: 600 emails, a server taking 100 ms per message, the worker SIGKILLed after a
    second, ``send_queued_mail`` started every 2 s as cron would: every email is delivered within 30 s
    of the kill, and only the emails in flight at the kill are delivered twice."""

    TOTAL = 600
    DELAY_MS = 100
    THREADS = 32  # the default
    CRON_SECONDS = 2
    TARGET_SECONDS = 30

    def test_sigkilled_worker_emails_are_delivered_within_seconds(self):
        self.queue_numbered(self.TOTAL)
        env = self.env(self.start_sink(delay_ms=self.DELAY_MS))  # the default lease and threads
        worker, _output = self.start_worker(env)
        wait_until(lambda: sum(arrived(self.record).values()) > 0, 30, "the first arrival")
        time.sleep(1)
        self.assertIsNone(worker.poll(), "the worker finished before it could be killed")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = time.monotonic()
        # A message whose data had reached the server is still taken after the client died: let those land.
        time.sleep(2 * self.DELAY_MS / 1000 + 0.3)

        # What the dead worker left: emails it had claimed and not recorded, some of them delivered.
        before = arrived(self.record)
        unrecorded = set(Email.objects.filter(status=STATUS.sending).values_list("subject", flat=True))
        in_flight = set(before) & unrecorded
        self.assertGreater(len(unrecorded), 0, "the worker held no claim when it was killed")

        # Cron: a run every CRON_SECONDS (overlapping runs are safe), until everything arrived.
        runs = []
        everyone = {f"mail {i}" for i in range(self.TOTAL)}
        while set(arrived(self.record)) != everyone:
            elapsed = time.monotonic() - killed_at
            self.assertLess(elapsed, self.TARGET_SECONDS, f"not all delivered {self.TARGET_SECONDS}s after the kill")
            runs.append(self.start_worker(env))
            time.sleep(self.CRON_SECONDS)
        delivered_after = time.monotonic() - killed_at
        self.finish(runs, timeout=60)

        after = arrived(self.record)
        self.assertEqual(set(after), everyone)
        self.assertEqual(Email.objects.exclude(status=STATUS.sent).count(), 0)
        duplicates = {subject for subject, count in after.items() if count > 1}
        self.assertLessEqual(duplicates, in_flight, "only emails in flight at the kill may arrive twice")
        self.assertLessEqual(len(duplicates), self.THREADS + FLUSH_EVERY)
        print(  # noqa: T201 - the figure for docs/reliability.md
            f"\n{self.TOTAL} emails, killed with {len(unrecorded)} claimed and unrecorded ({len(in_flight)} of them "
            f"delivered): all delivered {delivered_after:.1f}s after the kill, {len(duplicates)} twice"
        )


class SlowLiveWorkerTest(ProcessTestCase):
    """A worker waiting minutes (here: several leases) for a slow server keeps its claim."""

    LEASE_SECONDS = 1
    DELAY_MS = 4000

    def test_a_live_worker_renews_its_lease_and_nobody_takes_its_emails(self):
        self.queue_numbered(1)
        env = self.env(self.start_sink(delay_ms=self.DELAY_MS), POST_OFFICE_TEST_LEASE_SECONDS=str(self.LEASE_SECONDS))
        slow = self.start_worker(env)
        wait_until(lambda: Email.objects.filter(status=STATUS.sending).exists(), 15, "the claim", step=0.05)
        time.sleep(3 * self.LEASE_SECONDS)  # well past the lease the claim started with

        email = Email.objects.get()
        self.assertEqual(email.status, STATUS.sending)
        self.assertGreater(email.lease_expires_at, timezone.now(), "the live worker renews its lease")
        other = Worker(threads=1, lease_seconds=self.LEASE_SECONDS)
        self.assertEqual(other.requeue_stale_leases(), 0)
        self.assertEqual(other.run().attempted, 0, "another worker takes nothing the live one holds")

        self.finish([slow], timeout=30)
        self.assertEqual(arrived(self.record), {"mail 0": 1})
        self.assertEqual(Email.objects.get().status, STATUS.sent)


class RepeatedKillTest(ProcessTestCase):
    """Workers SIGKILLed again and again at random moments: nothing is lost, and an email arrives twice only
    if it was in flight (delivered, not yet recorded) when a worker died."""

    TOTAL = 1500  # about 7 s of work for 4 threads: long enough that every kill lands before the end
    DELAY_MS = 20
    KILLS = 6
    LEASE_SECONDS = 2

    def test_random_sigkills_lose_nothing(self):
        rng = random.Random(20261207)  # fixed: the same moments on every run
        self.queue_numbered(self.TOTAL)
        env = self.env(
            self.start_sink(delay_ms=self.DELAY_MS),
            POST_OFFICE_TEST_THREADS="4",
            POST_OFFICE_TEST_LEASE_SECONDS=str(self.LEASE_SECONDS),
        )
        in_flight: set[str] = set()
        kills = 0
        for _round in range(self.KILLS):
            worker, _output = self.start_worker(env)
            time.sleep(rng.uniform(0.3, 1.5))
            if worker.poll() is not None:
                break  # it finished first: nothing left to kill
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            kills += 1
            time.sleep(2 * self.DELAY_MS / 1000 + 0.3)  # messages whose data reached the server land
            unrecorded = set(Email.objects.filter(status=STATUS.sending).values_list("subject", flat=True))
            in_flight |= set(arrived(self.record)) & unrecorded

        # Then runs until all is delivered (the dead workers' leases run out meanwhile).
        everyone = {f"mail {i}" for i in range(self.TOTAL)}
        deadline = time.monotonic() + 60
        while Email.objects.exclude(status=STATUS.sent).exists():
            self.assertLess(time.monotonic(), deadline, "emails still not sent a minute after the last kill")
            self.finish([self.start_worker(env)], timeout=60)
            time.sleep(0.5)

        after = arrived(self.record)
        self.assertEqual(set(after), everyone, "emails were lost")
        duplicates = {subject for subject, count in after.items() if count > 1}
        self.assertLessEqual(duplicates, in_flight, "an email recorded as sent was sent again")
        self.assertLessEqual(max(after.values()), 1 + kills)
        self.assertGreaterEqual(kills, 3, "the workers finished before most kills: the queue is too short")
        print(  # noqa: T201 - the figure for docs/reliability.md
            f"\n{kills} SIGKILLs at random moments, {len(in_flight)} emails in flight at a kill, "
            f"{len(duplicates)} delivered twice, none lost"
        )


class DatabaseConnectionKilledTest(ProcessTestCase):
    """The worker's database connection is killed mid-batch (a failover, an admin's kill): the results it
    could not write are not lost; the emails go again after their lease, and only those."""

    TOTAL = 400
    DELAY_MS = 20
    LEASE_SECONDS = 2

    APP_NAME = "po-worker-to-kill"

    def kill_worker_connections(self) -> int:
        """End the worker's database sessions (on MariaDB: every session on the test database but ours)."""
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND application_name = %s",
                    [self.APP_NAME],
                )
                return cursor.rowcount
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            ids = [row[0] for row in cursor.fetchall()]
            for session in ids:
                cursor.execute(f"KILL CONNECTION {int(session)}")
            return len(ids)

    def test_results_that_could_not_be_written_are_sent_again_and_nothing_is_lost(self):
        if connection.vendor not in ("postgresql", "mysql"):
            self.skipTest("SQLite has no server connection to kill")
        self.queue_numbered(self.TOTAL)
        env = self.env(
            self.start_sink(delay_ms=self.DELAY_MS),
            POST_OFFICE_TEST_THREADS="4",
            POST_OFFICE_TEST_LEASE_SECONDS=str(self.LEASE_SECONDS),
        )
        worker, output = self.start_worker({**env, "PGAPPNAME": self.APP_NAME})
        wait_until(lambda: sum(arrived(self.record).values()) >= 60, 30, "60 arrivals")
        self.assertGreaterEqual(self.kill_worker_connections(), 1)
        worker.wait(timeout=60)
        # The run ends with the database error (cron starts the next one); what it could not record stays claimed.
        unrecorded = set(Email.objects.filter(status=STATUS.sending).values_list("subject", flat=True))
        self.assertIn("Error", output.read_text())

        deadline = time.monotonic() + 60
        while Email.objects.exclude(status=STATUS.sent).exists():
            self.assertLess(time.monotonic(), deadline, "emails still not sent a minute after the kill")
            self.finish([self.start_worker(env)], timeout=60)
            time.sleep(0.5)
        after = arrived(self.record)
        self.assertEqual(set(after), {f"mail {i}" for i in range(self.TOTAL)}, "emails were lost")
        duplicates = {subject for subject, count in after.items() if count > 1}
        self.assertLessEqual(duplicates, unrecorded, "an email whose result was written was sent again")
        self.assertLessEqual(max(after.values()), 2)
