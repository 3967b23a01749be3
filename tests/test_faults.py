"""Delivery under faults: SMTP errors, dropped and stalled connections, poison emails, many workers, SIGKILL.

Real delivery over SMTP to tests.faulty_smtp (in a thread, or in its own
process for the multi-process tests), with real ``send_queued_mail``
subprocesses where processes matter.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any
from unittest import mock

from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.db.models import Count
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from post_office import mail
from post_office.delivery import Worker
from post_office.delivery.pipeline import FLUSH_EVERY, FLUSH_SECONDS
from post_office.models import STATUS, Email, Log
from post_office.transport import smtp
from tests.faulty_smtp import FaultySMTP, free_port, wait_for_port
from tests.helpers import DJANGO_61, SMTP, delivering_to

ROOT = Path(__file__).resolve().parent.parent
SENDER = "from@example.com"
RETRY_INTERVAL = datetime.timedelta(minutes=10)

#: recipient -> (fault on the first attempt, the exception delivery records)
TRANSIENT = {
    "r421@example.com": ("421@rcpt", {"SMTPRecipientsRefused"}),
    "r451@example.com": ("451@rcpt", {"SMTPRecipientsRefused"}),
    "d421@example.com": ("421@data", {"SMTPDataError"}),
    "d451@example.com": ("451@data", {"SMTPDataError"}),
    "drop@example.com": ("drop@data", {"SMTPServerDisconnected"}),
    # A stalled reply ends in the client's socket timeout (smtplib reports it as a disconnect).
    "stall-rcpt@example.com": ("stall@rcpt", {"SMTPServerDisconnected", "TimeoutError"}),
    "stall-data@example.com": ("stall@data", {"SMTPServerDisconnected", "TimeoutError"}),
}
PERMANENT = {
    "r550@example.com": ("550@rcpt", {"SMTPRecipientsRefused"}),
    "d550@example.com": ("550@data", {"SMTPDataError"}),
}
GOOD = [f"good{i}@example.com" for i in range(6)]


def subject_for(recipient: str) -> str:
    return f"to {recipient}"


def queue(recipient: str, **kwargs: Any) -> Email:
    return mail.send([recipient], SENDER, subject=subject_for(recipient), message="body", **kwargs)


def logs_of(email: Email) -> list[tuple[int, str]]:
    return list(Log.objects.filter(email=email).order_by("id").values_list("status", "exception_type"))


def make_due(*emails: Email) -> None:
    Email.objects.filter(pk__in=[e.pk for e in emails]).update(
        scheduled_time=timezone.now() - datetime.timedelta(seconds=1)
    )


class SMTPFaultTest(TestCase):
    """Each SMTP fault leads to the right state after the right number of attempts."""

    pipelining = True

    def server(self, **kwargs: Any) -> FaultySMTP:
        server = FaultySMTP(pipelining=self.pipelining, **kwargs).start()
        self.addCleanup(server.stop)
        return server

    def assert_delivered_once(self, server: FaultySMTP, recipients: Sequence[str]) -> None:
        counts = server.counts()
        self.assertEqual({r: counts[subject_for(r)] for r in recipients}, dict.fromkeys(recipients, 1))

    def test_each_fault_in_one_batch_then_recovery(self):
        # No timeout from the backend options: POST_OFFICE['SEND_TIMEOUT'] bounds the stalled ones.
        server = self.server(timeout=None)
        faulty = {**TRANSIENT, **PERMANENT}
        for recipient, (action, _errors) in faulty.items():
            server.script(recipient, action)
        with delivering_to(server, MAX_RETRIES=3, RETRY_INTERVAL=RETRY_INTERVAL, SEND_TIMEOUT=1, LOG_LEVEL=2):
            # Good and faulty emails interleaved in one batch.
            emails = {r: queue(r) for pair in zip_longest(GOOD, faulty) for r in pair if r}
            before = timezone.now()
            stats = Worker(threads=4, batch_size=100).run()
            after = timezone.now()

            self.assertEqual((stats.sent, stats.requeued, stats.failed), (len(GOOD), len(TRANSIENT), len(PERMANENT)))
            for recipient, (action, errors) in TRANSIENT.items():
                email = Email.objects.get(pk=emails[recipient].pk)
                self.assertEqual((email.status, email.number_of_retries), (STATUS.requeued, 1), action)
                # Backoff: the first retry waits RETRY_INTERVAL, jittered down to no less than half.
                self.assertGreaterEqual(email.scheduled_time, before + RETRY_INTERVAL / 2, action)
                self.assertLessEqual(email.scheduled_time, after + RETRY_INTERVAL, action)
                self.assertEqual((email.claimed_by, email.lease_expires_at), ("", None))
                [(status, exception_type)] = logs_of(email)
                self.assertEqual(status, STATUS.failed, action)
                self.assertIn(exception_type, errors, action)
                if action.startswith("stall"):
                    # The client's timeout (SEND_TIMEOUT) ended it, not the server dropping the line.
                    self.assertIn("timed out", Log.objects.get(email=email).message)
            for recipient, (action, errors) in PERMANENT.items():
                email = Email.objects.get(pk=emails[recipient].pk)
                self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 0), action)
                [(status, exception_type)] = logs_of(email)
                self.assertEqual(status, STATUS.failed, action)
                self.assertIn(exception_type, errors, action)
            for recipient in GOOD:
                self.assertEqual(logs_of(emails[recipient]), [(STATUS.sent, "")])
            # One attempt each; only the good ones arrived, once.
            for recipient, (action, _errors) in faulty.items():
                self.assertEqual(server.attempts_for(recipient), [action])
            self.assertEqual(len(server.messages), len(GOOD))
            self.assert_delivered_once(server, GOOD)

            # Nothing is due before the backoff has passed.
            self.assertEqual(Worker().run().attempted, 0)

            # The server has recovered (scripts used up) and the retries come due.
            make_due(*(emails[r] for r in TRANSIENT))
            stats = Worker(threads=4).run()

        self.assertEqual((stats.sent, stats.requeued, stats.failed), (len(TRANSIENT), 0, 0))
        for recipient, (action, errors) in TRANSIENT.items():
            email = Email.objects.get(pk=emails[recipient].pk)
            self.assertEqual((email.status, email.number_of_retries), (STATUS.sent, 1), action)
            [first, second] = logs_of(email)
            self.assertEqual((first[0], second), (STATUS.failed, (STATUS.sent, "")), action)
            self.assertEqual(server.attempts_for(recipient), [action, "ok"])
        for recipient, (action, _errors) in PERMANENT.items():
            self.assertEqual(Email.objects.get(pk=emails[recipient].pk).status, STATUS.failed)
            self.assertEqual(server.attempts_for(recipient), [action])  # never retried
        self.assert_delivered_once(server, [*GOOD, *TRANSIENT])
        self.assertEqual(len(server.messages), len(GOOD) + len(TRANSIENT))

    def test_transient_faults_fail_after_max_retries_with_growing_backoff(self):
        server = self.server()
        # Faults that break the connection, at RCPT, at DATA and mid-DATA.
        faults = {"r421@example.com": "421@rcpt", "d451@example.com": "451@data", "drop@example.com": "drop@data"}
        for recipient, action in faults.items():
            server.script(recipient, action, repeat=True)
        interval = datetime.timedelta(minutes=1)
        with delivering_to(server, MAX_RETRIES=2, RETRY_INTERVAL=interval, LOG_LEVEL=2):
            emails = {r: queue(r) for r in faults}
            good = queue("good@example.com")
            for retries_before in range(3):
                before = timezone.now()
                stats = Worker(threads=2).run()
                after = timezone.now()
                self.assertEqual(stats.attempted, len(faults) + (retries_before == 0), retries_before)
                for recipient, action in faults.items():
                    email = Email.objects.get(pk=emails[recipient].pk)
                    if retries_before < 2:
                        self.assertEqual(
                            (email.status, email.number_of_retries), (STATUS.requeued, retries_before + 1), action
                        )
                        # RETRY_INTERVAL doubled per retry, jittered between half and all of it.
                        delay = interval * 2**retries_before
                        self.assertGreaterEqual(email.scheduled_time, before + delay / 2, action)
                        self.assertLessEqual(email.scheduled_time, after + delay, action)
                    else:
                        # MAX_RETRIES requeues used up: the third failure is final.
                        self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 2), action)
                make_due(*emails.values())
            self.assertEqual(Worker().run().attempted, 0)

        for recipient, action in faults.items():
            email = emails[recipient]
            self.assertEqual([status for status, _type in logs_of(email)], [STATUS.failed] * 3, action)
            self.assertEqual(server.attempts_for(recipient), [action] * 3)
        self.assertEqual(Email.objects.get(pk=good.pk).status, STATUS.sent)
        self.assertEqual(server.counts(), Counter({subject_for("good@example.com"): 1}))

    def test_commands_are_pipelined_when_the_server_offers_pipelining(self):
        server = self.server()
        server.script("partly-refused@example.com", "550@rcpt")
        with delivering_to(server), mock.patch.object(smtp, "send_chain", wraps=smtp.send_chain) as chained:
            queue("first@example.com")
            mail.send(["partly-refused@example.com", "second@example.com"], SENDER, subject="two", message="body")
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (2, 0, 0))
        # One refused recipient of two: the others get the message, as with smtplib's sendmail.
        self.assertEqual([m.rcpt_tos for m in server.messages], [["first@example.com"], ["second@example.com"]])
        # Both went back to back on one connection, the second's commands written with the first's content.
        self.assertEqual(chained.call_count, 1 if self.pipelining else 0)

    def test_a_broken_connection_does_not_affect_the_next_email(self):
        # One thread, one connection: every fault sits between two good emails on it.
        server = self.server()
        faulty = ["r421@example.com", "drop@example.com", "d421@example.com", "r451@example.com", "r550@example.com"]
        good = [f"{name}@example.com" for name in "abcdef"]
        order = [r for pair in zip_longest(good, faulty) for r in pair if r]
        expected = {r: STATUS.sent for r in good}
        for recipient in faulty:
            action, _errors = TRANSIENT.get(recipient) or PERMANENT[recipient]
            server.script(recipient, action)
            expected[recipient] = STATUS.requeued if recipient in TRANSIENT else STATUS.failed
        with delivering_to(server, MAX_RETRIES=3, RETRY_INTERVAL=RETRY_INTERVAL):
            emails = {r: queue(r) for r in order}
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.requeued, stats.failed), (len(good), 4, 1))
        self.assertEqual({r: Email.objects.get(pk=e.pk).status for r, e in emails.items()}, expected)
        self.assert_delivered_once(server, good)
        # The good emails came in queue order over one connection, reopened after each fault.
        self.assertEqual([m.rcpt_tos for m in server.messages], [[r] for r in good])
        self.assertLessEqual(server.connections, 1 + len(faulty))


class SMTPFaultWithoutPipeliningTest(SMTPFaultTest):
    """The same faults against a server that does not offer PIPELINING (one command at a time)."""

    pipelining = False


class PoisonBackend(BaseEmailBackend):
    """Fails every message with ``error`` (set by the test), in ``open()`` or in ``send_messages()``."""

    error: BaseException = RuntimeError("unexpected bug in a backend")
    fail_in_open = False

    def open(self) -> bool:
        if self.fail_in_open:
            raise self.error
        return True

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        raise self.error


class NoStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot describe itself")


class PoisonEmailTest(TestCase):
    """An email whose backend raises something unexpected does not hold up the others."""

    POISONS: dict[str, tuple[BaseException, bool]] = {
        "runtime error": (RuntimeError("unexpected bug in a backend"), False),
        # PostgreSQL text columns refuse NUL characters: the Log message must still be storable.
        "NUL in the message": (ValueError("server said \x00\x00 and hung up"), False),
        "unprintable error": (NoStr(), False),
        # asyncio's cancellation is a BaseException, not an Exception (e.g. from an async HTTP client).
        "cancelled": (asyncio.CancelledError(), False),
        # Raised in a delivery thread they are the backend's doing, not a signal: the pass goes on.
        "SystemExit from a backend": (SystemExit(3), False),
        "KeyboardInterrupt from a backend": (KeyboardInterrupt(), False),
    }

    def setUp(self) -> None:
        self.server = FaultySMTP().start()
        self.addCleanup(self.server.stop)
        self.addCleanup(setattr, PoisonBackend, "fail_in_open", False)
        self.addCleanup(setattr, PoisonBackend, "error", PoisonBackend.error)

    def deliver(self, **po: Any):
        backends = {"default": "smtp" if DJANGO_61 else SMTP, "poison": f"{__name__}.PoisonBackend"}
        return delivering_to(self.server, BACKENDS=backends, LOG_LEVEL=2, **po)

    def test_poison_email_does_not_hold_up_the_others(self):
        for label, (error, in_open) in self.POISONS.items():
            with self.subTest(label):
                PoisonBackend.error, PoisonBackend.fail_in_open = error, in_open
                Email.objects.all().delete()
                self.server.messages.clear()
                with self.deliver(MAX_RETRIES=1, RETRY_INTERVAL=RETRY_INTERVAL):
                    # The poison email goes first; one thread, so every other email comes after it.
                    poison = mail.send(["p@example.com"], SENDER, subject="poison", priority="high", backend="poison")
                    good = [queue(f"user{i}@example.com") for i in range(10)]
                    stats = Worker(threads=1, batch_size=4).run()

                    # Everyone else was delivered in the same run.
                    self.assertEqual((stats.sent, stats.requeued, stats.failed), (10, 1, 0))
                    self.assertEqual(sorted(self.server.counts()), sorted(e.subject for e in good))
                    self.assertEqual({Email.objects.get(pk=e.pk).status for e in good}, {STATUS.sent})
                    # The poison is unexpected, hence transient: requeued with backoff...
                    stored = Email.objects.get(pk=poison.pk)
                    self.assertEqual((stored.status, stored.number_of_retries), (STATUS.requeued, 1))
                    self.assertEqual([s for s, _type in logs_of(poison)], [STATUS.failed])
                    self.assertEqual(logs_of(poison)[0][1], type(error).__name__)
                    # ... and failed for good once MAX_RETRIES is used up.
                    make_due(poison)
                    self.assertEqual(Worker(threads=1).run().failed, 1)
                stored.refresh_from_db()
                self.assertEqual((stored.status, stored.number_of_retries), (STATUS.failed, 1))
                self.assertEqual([s for s, _type in logs_of(poison)], [STATUS.failed, STATUS.failed])
                self.assertNotIn("\x00", Log.objects.filter(email=poison).first().message)


# -- several processes -------------------------------------------------------


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def arrived(record: Path) -> Counter[str]:
    if not record.exists():
        return Counter()
    return Counter(record.read_text(encoding="utf-8").splitlines())


def wait_until(predicate: Any, timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class ProcessTestCase(TransactionTestCase):
    """Runs the sink and the workers as processes; their output goes to files, so no pipe can fill up."""

    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="po-faults-")
        self.addCleanup(directory.cleanup)
        self.directory = Path(directory.name)
        self.record = self.directory / "arrived.txt"
        self.started = 0

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        self.started += 1
        output = self.directory / f"process-{self.started}.out"
        with output.open("wb") as handle:
            process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, process)
        return process, output

    def start_sink(self, delay_ms: float = 0) -> int:
        """Start tests.faulty_smtp in its own process; return its port."""
        port = free_port()
        process, output = self.spawn(
            [
                sys.executable,
                "-m",
                "tests.faulty_smtp",
                f"--port={port}",
                f"--delay-ms={delay_ms}",
                f"--record={self.record}",
            ]
        )
        try:
            wait_for_port("127.0.0.1", port)
        except TimeoutError:
            process.kill()
            raise AssertionError(output.read_text()) from None
        return port

    def env(self, port: int, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
            "POST_OFFICE_TEST_SMTP_PORT": str(port),
            **extra,
        }

    def start_worker(self, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        return self.spawn([sys.executable, "manage.py", "send_queued_mail", "--settings=tests.settings", *args], env)

    def finish(self, workers: list[tuple[subprocess.Popen[bytes], Path]], timeout: float) -> list[str]:
        """Wait for the workers (all within ``timeout``); return their outputs."""
        deadline = time.monotonic() + timeout
        outputs = []
        for process, output in workers:
            try:
                process.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker still running after {timeout}s: {output.read_text()}") from None
            text = output.read_text()
            self.assertEqual(process.returncode, 0, text)
            outputs.append(text)
        return outputs

    def queue_numbered(self, total: int, chunk: int = 500) -> None:
        for start in range(0, total, chunk):
            mail.send_many(
                [
                    {"recipients": [f"user{i}@example.com"], "sender": SENDER, "subject": f"mail {i}", "message": "b"}
                    for i in range(start, min(total, start + chunk))
                ]
            )


class ExactlyOnceTest(ProcessTestCase):
    """Four ``send_queued_mail`` processes started at once deliver every email exactly once."""

    def test_four_processes_deliver_each_email_exactly_once(self):
        # The full 5,000 on PostgreSQL and MariaDB; SQLite (one writer at a time) runs a smaller queue.
        total = 5000 if connection.vendor in ("postgresql", "mysql") else 600
        self.queue_numbered(total)
        env = self.env(self.start_sink())
        workers = [self.start_worker(env) for _ in range(4)]
        outputs = self.finish(workers, timeout=150)

        counts = arrived(self.record)
        self.assertEqual(sorted(s for s, n in counts.items() if n > 1), [], "delivered more than once")
        self.assertEqual(set(counts), {f"mail {i}" for i in range(total)})
        self.assertEqual(sum(counts.values()), total)
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), total)
        self.assertEqual(Email.objects.count(), total)
        # One attempt each: one Log per email.
        self.assertEqual(Log.objects.count(), total)
        self.assertFalse(Log.objects.values("email").annotate(n=Count("id")).filter(n__gt=1).exists())
        reported = [re.search(r"(\d+) sent, (\d+) failed, (\d+) requeued", out) for out in outputs]
        self.assertTrue(all(reported), outputs)
        self.assertEqual(sum(int(m.group(1)) for m in reported if m), total)


class KilledWorkerTest(ProcessTestCase):
    """A worker killed with SIGKILL mid-batch: nothing is lost, and only what it had in flight is sent twice."""

    TOTAL = 240
    THREADS = 4  # = connections: MAX_CONNECTIONS defaults to one per thread
    DELAY = 0.05  # seconds per message at the sink, like a remote server
    KILL_AFTER = 80  # arrivals: well above the bound, so recording only at the end of the batch would show
    LEASE_SECONDS = 2

    # The bound asserted on the emails that had arrived but whose result was not committed
    # when the worker died (exactly those are sent twice):
    # - each connection completes at most one email per DELAY (the sink answers 250 only
    #   after it), so at most THREADS / DELAY emails per second;
    # - results are committed in chunks: once FLUSH_EVERY outcomes were collected, or once
    #   FLUSH_SECONDS passed since the last commit. The outcomes collected but not committed
    #   are those completed since the last committed chunk was collected: at most
    #   FLUSH_EVERY - 1 plus those completing while the main thread was busy (the commit of
    #   that chunk, a claim, the commit of the next chunk, each far shorter than DELAY;
    #   allow DELAY each), and at most what completes within FLUSH_SECONDS + 3 * DELAY;
    # - plus one per connection that the sink accepted but whose thread had not returned yet.
    _window = math.ceil((FLUSH_SECONDS + 3 * DELAY) / DELAY) + 1
    BOUND = min(FLUSH_EVERY - 1 + 3 * THREADS, THREADS * _window) + THREADS

    def test_sigkill_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(self):
        self.assertLess(self.BOUND, self.KILL_AFTER, "FLUSH_EVERY / FLUSH_SECONDS no longer record results promptly")
        self.queue_numbered(self.TOTAL)
        env = self.env(
            self.start_sink(delay_ms=self.DELAY * 1000),
            POST_OFFICE_TEST_THREADS=str(self.THREADS),
            POST_OFFICE_TEST_LEASE_SECONDS=str(self.LEASE_SECONDS),
        )
        worker, _output = self.start_worker(env, f"--batch-size={self.TOTAL}")
        wait_until(
            lambda: sum(arrived(self.record).values()) >= self.KILL_AFTER or worker.poll() is not None,
            timeout=60,
            what=f"{self.KILL_AFTER} emails to arrive",
        )
        self.assertIsNone(worker.poll(), "the worker finished before it could be killed")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        # Its claims run out after LEASE_SECONDS; then the rows show what it left behind.
        wait_until(
            lambda: not Email.objects.filter(status=STATUS.sending, lease_expires_at__gte=timezone.now()).exists(),
            timeout=self.LEASE_SECONDS + 15,
            what="the dead worker's leases to expire",
            step=0.1,
        )
        before = arrived(self.record)
        status = dict(Email.objects.values_list("subject", "status"))
        self.assertEqual(set(status.values()) - {STATUS.sent, STATUS.sending}, set(), "all were claimed at once")
        recorded_sent = {s for s, st in status.items() if st == STATUS.sent}
        unrecorded = {s for s, st in status.items() if st == STATUS.sending}
        # A result is recorded only after the sink accepted the email; each arrived once so far.
        self.assertLessEqual(recorded_sent, set(before))
        self.assertEqual(max(before.values()), 1)
        in_flight = set(before) & unrecorded
        self.assertGreater(len(recorded_sent), 0, "results were recorded while the batch was going on")
        self.assertLessEqual(len(in_flight), self.BOUND)

        # A normal run after the lease expired takes over the dead worker's emails.
        [output] = self.finish([self.start_worker(env)], timeout=60)
        self.assertRegex(output, rf"\b{len(unrecorded)} sent, 0 failed, 0 requeued")

        after = arrived(self.record)
        self.assertEqual(set(after), {f"mail {i}" for i in range(self.TOTAL)}, "emails were lost")
        self.assertEqual(Email.objects.exclude(status=STATUS.sent).count(), 0)
        duplicates = {s for s, n in after.items() if n > 1}
        # Exactly the ones in flight at the kill were sent twice; nothing recorded as sent was sent again.
        self.assertEqual(duplicates, in_flight)
        self.assertLessEqual(len(duplicates), self.BOUND)
        self.assertEqual(max(after.values()), 2)
