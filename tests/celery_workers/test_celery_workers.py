"""Celery with real brokers and real ``celery worker`` processes (make test-celery).

Each test runs against Redis (database 8) and against RabbitMQ, on the test
database (PostgreSQL or MariaDB; SQLite runs a smaller queue). The workers are
``celery -A tests.celery_workers.app worker`` processes (prefork, one child,
prefetch 1) delivering over SMTP to a tests.faulty_smtp process, which records
every arrival in a file; every test uses queues of its own, named
``po_celery_<random>_bulk`` and ``..._urgent``, so nothing left in a broker by
another run is consumed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.test import override_settings

from post_office import mail
from post_office.conf import settings as po_settings
from post_office.models import STATUS, Email
from tests.celery_publisher import open_publisher
from tests.test_faults import ROOT, SENDER, ProcessTestCase, arrived, wait_until

BROKERS = {
    "redis": "redis://127.0.0.1:6379/8",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


class Rollback(Exception):
    pass


class CeleryWorkersMixin(ProcessTestCase):
    __test__ = False  # run by the broker's subclasses below
    broker = "redis"

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # The publishing side (the web process): shared tasks are sent through this app.
        cls.app = open_publisher("post_office_celery_publisher", BROKERS[cls.broker], cls.broker)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.app.close()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.app.set_current()
        tag = uuid.uuid4().hex[:10]
        self.tag = f"po_celery_{tag}"
        self.bulk, self.urgent = f"{self.tag}_bulk", f"{self.tag}_urgent"
        self.addCleanup(self.delete_queues)
        queues = {"CELERY_QUEUE": self.bulk, "CELERY_PRIORITY_QUEUE": self.urgent}
        enabled = override_settings(POST_OFFICE={**po_settings.raw, "CELERY_ENABLED": True, **queues})
        enabled.enable()
        self.addCleanup(enabled.disable)
        self.options: dict[str, Any] = queues

    # -- the broker ---------------------------------------------------------------------------------

    def queue_size(self, name: str) -> int:
        """Messages waiting in a queue (0 for a queue nobody declared yet)."""
        with self.app.connection_for_read() as conn:
            try:
                return int(conn.default_channel.queue_declare(queue=name, passive=True).message_count)
            except Exception:  # noqa: BLE001 - the broker says NOT_FOUND: no queue, no message
                return 0

    def delete_queues(self) -> None:
        """Leave nothing of this test in the broker: its queues, exchanges and (Redis) binding keys."""
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in (self.bulk, self.urgent):
                for delete in (channel.queue_delete, channel.exchange_delete):
                    try:
                        delete(name)
                    except Exception:  # noqa: BLE001, S110 - never declared
                        pass
            if self.broker == "redis":
                client = channel.client
                keys = list(client.scan_iter(match=f"*{self.tag}*"))
                if keys:
                    client.delete(*keys)

    # -- worker processes ---------------------------------------------------------------------------

    def worker_env(self, port: int, post_office: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
        options = {**self.options, **(post_office or {})}
        return self.env(
            port,
            DJANGO_SETTINGS_MODULE="tests.celery_workers.settings",
            POST_OFFICE_CELERY_BROKER=BROKERS[self.broker],
            POST_OFFICE_TEST_OPTIONS=json.dumps(options),
            **extra,
        )

    def start_celery(
        self, env: dict[str, str], queues: list[str], name: str, beat: bool = False
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """A ``celery worker`` in a process group of its own (the pool's child included); wait until it is ready."""
        self.started += 1
        output = self.directory / f"celery-{name}.out"
        args = [sys.executable, "-m", "celery", "-A", "tests.celery_workers.app", "worker", "-l", "INFO"]
        args += ["-Q", ",".join(queues), "-c", "1", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if beat:
            args += ["-B", "-s", str(self.directory / f"beat-{name}")]
        with output.open("wb") as handle:
            process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.addCleanup(stop_group, process)
        wait_until(lambda: " ready." in output.read_text() or process.poll() is not None, 60, f"worker {name}")
        self.assertIsNone(process.poll(), output.read_text())
        return process, output

    def sent_by(self, output: Path) -> int:
        """What a worker's tasks reported as sent (from the worker's 'Task ... succeeded' lines)."""
        return sum(int(n) for n in re.findall(r"succeeded in [\d.]+s: \{'sent': (\d+)", output.read_text()))

    def all_sent(self, total: int, timeout: float) -> float:
        """Wait until every email is sent; return when that was (time.monotonic())."""
        wait_until(lambda: Email.objects.filter(status=STATUS.sent).count() == total, timeout, f"{total} sent", 0.2)
        return time.monotonic()

    # -- the tests ----------------------------------------------------------------------------------

    def test_rollback_sends_no_task_and_no_email(self):
        try:
            with transaction.atomic():
                self.queue_numbered(3)
                raise Rollback
        except Rollback:
            pass
        self.assertEqual(self.queue_size(self.bulk), 0, "a task was sent for a rolled-back transaction")
        with transaction.atomic():
            for i in range(3):  # three send() calls, one commit: one task
                mail.send([f"kept{i}@example.com"], SENDER, subject=f"kept {i}", message="b")
        wait_until(lambda: self.queue_size(self.bulk) == 1, 10, "the task of the commit")
        time.sleep(0.5)
        self.assertEqual(self.queue_size(self.bulk), 1, "one task per commit")

        self.start_celery(self.worker_env(self.start_sink()), [self.bulk], "w1")
        self.all_sent(3, 60)
        wait_until(lambda: sum(arrived(self.record).values()) == 3, 10, "the arrivals")
        self.assertEqual(arrived(self.record), {"kept 0": 1, "kept 1": 1, "kept 2": 1})
        self.assertEqual(Email.objects.count(), 3)
        self.assertEqual(self.queue_size(self.bulk), 0)

    def test_two_workers_deliver_each_email_exactly_once(self):
        total = 5000 if connection.vendor in ("postgresql", "mysql") else 600
        env = self.worker_env(self.start_sink())
        workers = [self.start_celery(env, [self.bulk], f"w{n}") for n in (1, 2)]
        started = time.monotonic()
        self.queue_numbered(total)  # ten commits of 500: ten tasks, and more from passes that find a backlog
        queued = time.monotonic()
        finished = self.all_sent(total, 300)

        counts = arrived(self.record)
        self.assertEqual(sorted(s for s, n in counts.items() if n > 1), [], "delivered more than once")
        self.assertEqual(set(counts), {f"mail {i}" for i in range(total)})
        wait_until(lambda: sum(self.sent_by(out) for _p, out in workers) == total, 30, "the workers' task results")
        shares = [self.sent_by(output) for _process, output in workers]
        self.assertTrue(all(shares), f"both workers delivered: {shares}")
        print(  # noqa: T201 - the figure for docs/celery.rst
            f"\n[{self.broker}, {connection.vendor}] {total} emails through two celery workers: "
            f"{finished - started:.1f}s from the first commit (queueing {queued - started:.1f}s), "
            f"{total / (finished - started):.0f} emails/s; shares {shares}"
        )

    def test_a_sigkilled_worker_loses_nothing(self):
        total, lease = 1500, 2
        env = self.worker_env(
            self.start_sink(delay_ms=20),
            {"LEASE_SECONDS": lease, "THREADS_PER_PROCESS": 4},
            POST_OFFICE_CELERY_BEAT_SCALE="5",
        )
        first, _output = self.start_celery(env, [self.bulk], "doomed")
        self.queue_numbered(total)
        wait_until(lambda: sum(arrived(self.record).values()) > 50, 60, "the first arrivals")
        time.sleep(0.5)
        self.assertIsNone(first.poll())
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool's child: a host gone
        first.wait(timeout=10)
        time.sleep(0.3)  # messages whose data reached the server land
        unrecorded = set(Email.objects.filter(status=STATUS.sending).values_list("subject", flat=True))
        in_flight = set(arrived(self.record)) & unrecorded
        self.assertGreater(len(unrecorded), 0, "the worker held no claim when it was killed")

        # Another worker with beat (lease recovery every 3 s, a pass every 12 s): everything arrives.
        killed = time.monotonic()
        self.start_celery(env, [self.bulk], "survivor", beat=True)
        done = self.all_sent(total, 120)
        after = arrived(self.record)
        self.assertEqual(set(after), {f"mail {i}" for i in range(total)})
        duplicates = {subject for subject, count in after.items() if count > 1}
        self.assertLessEqual(duplicates, in_flight, "only emails in flight at the kill may arrive twice")
        print(  # noqa: T201 - the figure for docs/celery.rst
            f"\n[{self.broker}, {connection.vendor}] worker SIGKILLed holding {len(unrecorded)} claimed emails "
            f"({len(in_flight)} of them delivered): all {total} delivered {done - killed:.1f}s later, "
            f"{len(duplicates)} twice"
        )

    def test_the_priority_queue_delivers_while_a_bulk_run_goes_on(self):
        total = 3000
        # Batches of 1,000 on two threads at 10 ms an email: the bulk pass claims again only every 5 s,
        # so the urgent email is the priority worker's to send.
        env = self.worker_env(self.start_sink(delay_ms=10), {"THREADS_PER_PROCESS": 2, "BATCH_SIZE": 1000})
        self.start_celery(env, [self.bulk], "bulk")
        _urgent, urgent_output = self.start_celery(env, [self.urgent], "urgent")
        self.queue_numbered(total)
        wait_until(lambda: sum(arrived(self.record).values()) > 100, 60, "the bulk run")
        queued = time.monotonic()
        mail.send(["vip@example.com"], SENDER, subject="urgent", message="b", priority="high")
        wait_until(lambda: "urgent" in arrived(self.record), 10, "the urgent email")
        latency = time.monotonic() - queued
        bulk_sent = sum(arrived(self.record).values()) - 1
        self.assertLess(bulk_sent, total, "the bulk run was over already")
        wait_until(lambda: self.sent_by(urgent_output) == 1, 10, "the priority worker's task result")
        self.assertLess(latency, 3)
        print(  # noqa: T201 - the figure for docs/celery.rst
            f"\n[{self.broker}, {connection.vendor}] a high-priority email arrived {latency:.2f}s after its commit, "
            f"sent by the priority worker while the bulk run had sent {bulk_sent} of {total}"
        )
        self.all_sent(total + 1, 120)


def stop_group(process: subprocess.Popen[Any]) -> None:
    """Stop a worker and its pool's children (TERM: warm shutdown; KILL after 20 s)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a child the main process left behind
    except ProcessLookupError:
        pass


class RedisWorkersTest(CeleryWorkersMixin):
    __test__ = True
    broker = "redis"


class RabbitMQWorkersTest(CeleryWorkersMixin):
    __test__ = True
    broker = "rabbitmq"
