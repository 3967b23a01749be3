"""Delivery controls: run limits, throttle, rate limits, connection caps, pause, signals, logs, retry policy."""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import smtplib
import socket
import threading
import uuid
from collections.abc import Sequence
from io import StringIO
from typing import Any, ClassVar
from unittest import mock

from django.core import mail as django_mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import CommandError, call_command
from django.db import connection
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.test import SimpleTestCase, TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import exceptions, retry
from post_office.delivery import Outcome, RunStats, Worker, pipeline
from post_office.delivery import worker as delivery_worker
from post_office.models import STATUS, DeliverySwitch, Email, Log
from post_office.retry import ErrorKind
from post_office.signals import email_failed, email_sent
from post_office.transport import ratelimit
from tests.backends import ScriptedBackend
from tests.helpers import QueueTestMixin

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
BACKENDS = {
    "default": LOCMEM,
    "scripted": "tests.backends.ScriptedBackend",
    "counting": "tests.test_controls.CountingBackend",
    "slow": "tests.test_controls.SlowBackend",
}


def transient() -> Exception:
    return smtplib.SMTPServerDisconnected("connection unexpectedly closed")


def permanent() -> Exception:
    return smtplib.SMTPDataError(554, b"5.7.1 message rejected")


class CountingBackend(BaseEmailBackend):
    """Counts connections open at the same moment (opened and not yet closed).

    A send waits (briefly) until ``expect_parallel`` connections are open, so a
    test sees the pool reach its cap instead of relying on timing luck.
    Subjects starting with "drop" fail like a dropped connection.
    """

    expect_parallel: ClassVar[int] = 1
    open_now: ClassVar[int] = 0
    max_open: ClassVar[int] = 0
    opened: ClassVar[int] = 0
    sent: ClassVar[list[str]] = []
    _condition = threading.Condition()

    @classmethod
    def reset(cls, expect_parallel: int = 1) -> None:
        cls.expect_parallel = expect_parallel
        cls.open_now = cls.max_open = cls.opened = 0
        cls.sent = []

    def open(self) -> bool:
        with self._condition:
            cls = type(self)
            cls.open_now += 1
            cls.opened += 1
            cls.max_open = max(cls.max_open, cls.open_now)
            self._condition.notify_all()
        return True

    def close(self) -> None:
        with self._condition:
            type(self).open_now -= 1

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        with self._condition:
            self._condition.wait_for(lambda: type(self).open_now >= type(self).expect_parallel, timeout=5)
        for message in email_messages:
            if message.subject.startswith("drop"):
                raise smtplib.SMTPServerDisconnected("dropped")
            with self._condition:
                type(self).sent.append(message.subject)
        return len(email_messages)


class ControlsTestCase(QueueTestMixin, TestCase):
    backends = BACKENDS

    def setUp(self) -> None:
        ScriptedBackend.reset()
        CountingBackend.reset()
        SlowBackend.sent = []
        super().setUp()

    def queue_many(self, count: int, prefix: str = "email", **kwargs) -> list[Email]:
        return [self.queue(f"{prefix} {i}", **kwargs) for i in range(count)]

    def counts(self) -> dict[int, int]:
        return {status: Email.objects.filter(status=status).count() for status in STATUS}


# -- run limits -----------------------------------------------------------------


class MaxBatchTest(ControlsTestCase):
    """Stop a run after N emails were sent (django-mailer's MAILER_EMAIL_MAX_BATCH)."""

    def test_worker_stops_after_max_sent(self):
        self.queue_many(10)
        stats = Worker(threads=1, max_sent=3).run()
        self.assertEqual(stats.sent, 3)
        self.assertEqual(len(django_mail.outbox), 3)
        self.assertIn("MAX_BATCH 3", stats.stopped_because)
        # The rest waits for the next run, unclaimed.
        self.assertEqual(self.counts()[STATUS.queued], 7)
        self.assertEqual(self.counts()[STATUS.sending], 0)

    def test_exact_with_many_threads_and_a_large_batch(self):
        self.queue_many(30)
        stats = Worker(threads=4, batch_size=100, max_sent=7).run()
        self.assertEqual(stats.sent, 7)
        self.assertEqual(len(django_mail.outbox), 7)
        self.assertEqual(self.counts()[STATUS.queued], 23)
        self.assertEqual(self.counts()[STATUS.sending], 0)

    def test_failures_do_not_count(self):
        ScriptedBackend.errors = {f"bad {i}": permanent() for i in range(3)}
        for i in range(3):
            self.queue(f"bad {i}", backend="scripted", priority="high")
        self.queue_many(5, backend="scripted")
        stats = Worker(threads=1, max_sent=2).run()
        self.assertEqual((stats.sent, stats.failed), (2, 3))

    def test_setting_and_django_mailer_fallback(self):
        self.queue_many(6)
        with self.po(MAX_BATCH=2):
            self.assertEqual(Worker(threads=1).run().sent, 2)
        with self.settings(MAILER_EMAIL_MAX_BATCH=3):
            self.assertEqual(Worker(threads=1).run().sent, 3)
            # POST_OFFICE's own key wins over django-mailer's.
            with self.po(MAX_BATCH=1):
                self.assertEqual(Worker(threads=1).run().sent, 1)
        # Nothing set: no limit.
        self.assertEqual(self.counts()[STATUS.queued], 0)

    def test_keyword_overrides_the_setting(self):
        self.queue_many(4)
        with self.po(MAX_BATCH=1):
            self.assertEqual(Worker(threads=1, max_sent=3).run().sent, 3)


class MaxDeferredTest(ControlsTestCase):
    """Stop a run after N failed attempts (django-mailer's MAILER_EMAIL_MAX_DEFERRED)."""

    def assert_stopped_after(self, stats: RunStats, limit: int, threads: int, total: int) -> None:
        failures = stats.failed + stats.requeued
        # Attempts already in flight when the limit is reached finish and are recorded.
        self.assertGreaterEqual(failures, limit)
        self.assertLessEqual(failures, limit + threads - 1)
        self.assertIn(f"MAX_DEFERRED {limit}", stats.stopped_because)
        self.assertEqual(self.counts()[STATUS.queued], total - failures)
        self.assertEqual(self.counts()[STATUS.sending], 0)
        self.assertEqual(len(ScriptedBackend.attempts), failures)

    def test_worker_stops_after_max_failures(self):
        ScriptedBackend.error_for_all = transient()
        self.queue_many(20, backend="scripted")
        stats = Worker(threads=1, batch_size=100, max_failures=2).run()
        self.assert_stopped_after(stats, 2, threads=1, total=20)

    def test_with_several_threads(self):
        ScriptedBackend.error_for_all = transient()
        self.queue_many(40, backend="scripted")
        stats = Worker(threads=3, batch_size=100, max_failures=4).run()
        self.assert_stopped_after(stats, 4, threads=3, total=40)

    def test_both_failed_and_requeued_count(self):
        ScriptedBackend.errors = {"permanent": permanent(), "transient": transient()}
        self.queue("permanent", backend="scripted", priority="high")
        self.queue("transient", backend="scripted", priority="high")
        self.queue_many(3, backend="scripted")
        stats = Worker(threads=1, batch_size=1, max_failures=2).run()
        self.assertEqual((stats.failed, stats.requeued, stats.sent), (1, 1, 0))
        self.assertEqual(self.counts()[STATUS.queued], 3)

    def test_setting_and_django_mailer_fallback(self):
        ScriptedBackend.error_for_all = transient()
        self.queue_many(10, backend="scripted")
        with self.po(MAX_DEFERRED=1):
            self.assertEqual(Worker(threads=1, batch_size=1).run().requeued, 1)
        with self.settings(MAILER_EMAIL_MAX_DEFERRED=2):
            self.assertEqual(Worker(threads=1, batch_size=1).run().requeued, 2)


class MaxSecondsTest(ControlsTestCase):
    def test_zero_seconds_claims_nothing(self):
        self.queue_many(3)
        stats = Worker(max_seconds=0).run()
        self.assertEqual(stats.attempted, 0)
        self.assertIn("--max-seconds 0", stats.stopped_because)
        self.assertEqual(self.counts()[STATUS.queued], 3)

    def test_stops_once_the_time_is_used_up(self):
        # A fake clock: one second passes per attempt, so no wall-clock timing is involved.
        self.queue_many(20, backend="scripted")
        with mock.patch.object(
            RunStats,
            "elapsed",
            new_callable=mock.PropertyMock,
            side_effect=lambda: float(len(ScriptedBackend.attempts)),
        ):
            stats = Worker(threads=1, batch_size=2, max_seconds=2.5).run()
        # No attempt starts once the time is up; the emails claimed but not started go back.
        self.assertEqual(stats.sent, 3)
        self.assertIn("--max-seconds 2.5", stats.stopped_because)
        self.assertEqual(self.counts()[STATUS.queued], 20 - stats.sent)
        self.assertEqual(self.counts()[STATUS.sending], 0)

    def test_send_queued_mail_option(self):
        self.queue_many(3)
        out = StringIO()
        call_command("send_queued_mail", "--max-seconds", "0", stdout=out)
        self.assertIn("0 sent", out.getvalue())
        self.assertIn("stopped: --max-seconds 0", out.getvalue())
        self.assertEqual(self.counts()[STATUS.queued], 3)
        call_command("send_queued_mail", "--max-seconds", "600", stdout=out)
        self.assertEqual(self.counts()[STATUS.sent], 3)
        with self.assertRaisesMessage(CommandError, "--max-seconds must be zero or more"):
            call_command("send_queued_mail", "--max-seconds", "-1", stdout=out)


class ThrottleTest(ControlsTestCase):
    """Sleep after each email (django-mailer's MAILER_EMAIL_THROTTLE), recorded instead of timed."""

    def run_recording_sleeps(self, **worker_options) -> tuple[RunStats, list[float]]:
        sleeps: list[float] = []
        with mock.patch("post_office.delivery.threads.time.sleep", side_effect=sleeps.append):
            stats = Worker(**worker_options).run()
        return stats, sleeps

    def test_sleeps_after_every_attempt(self):
        ScriptedBackend.errors = {"email 1": transient()}
        self.queue_many(4, backend="scripted")
        stats, sleeps = self.run_recording_sleeps(threads=2, throttle=0.25)
        self.assertEqual(stats.attempted, 4)
        self.assertEqual(sleeps, [0.25] * 4)

    def test_setting_and_django_mailer_fallback(self):
        self.queue_many(2)
        with self.po(THROTTLE=0.5):
            _stats, sleeps = self.run_recording_sleeps(threads=1)
        self.assertEqual(sleeps, [0.5, 0.5])
        self.queue_many(3, prefix="more")
        with self.settings(MAILER_EMAIL_THROTTLE=2):
            _stats, sleeps = self.run_recording_sleeps(threads=1)
        self.assertEqual(sleeps, [2.0] * 3)

    def test_no_throttle_no_sleep(self):
        self.queue_many(3)
        _stats, sleeps = self.run_recording_sleeps(threads=1)
        self.assertEqual(sleeps, [])

    def test_priority_now_is_not_throttled(self):
        sleeps: list[float] = []
        with self.po(THROTTLE=5), mock.patch("post_office.delivery.threads.time.sleep", side_effect=sleeps.append):
            with self.captureOnCommitCallbacks(execute=True):
                email = self.queue("urgent", priority="now")
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.sent)
        self.assertEqual(sleeps, [])


# -- rate limits ----------------------------------------------------------------


def _book_in_child(alias: str, rate: float, count: int, results: Any) -> None:
    results.put([ratelimit.book_slot(alias, rate) for _ in range(count)])


class RateLimitTest(SimpleTestCase):
    """``book_slot`` spaces send times 1/rate apart, across threads and processes; no speed is timed."""

    def alias(self) -> str:
        alias = f"rate-test-{uuid.uuid4().hex}"
        path = ratelimit._state_path(alias)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        return alias

    def assert_spaced(self, slots: list[float], rate: float) -> None:
        ordered = sorted(slots)
        self.assertEqual(len(set(ordered)), len(ordered), "two senders got the same slot")
        # The state file holds wall-clock floats, so allow for their rounding (~1e-7 s).
        gaps = [later - earlier for earlier, later in zip(ordered, ordered[1:])]
        self.assertGreaterEqual(min(gaps), 1 / rate - 1e-6, gaps)

    def test_slots_follow_each_other(self):
        alias = self.alias()
        start = 1_000_000.0
        slots = [ratelimit.book_slot(alias, 4, now=start) for _ in range(3)]
        self.assertEqual(slots, [start, start + 0.25, start + 0.5])

    def test_idle_time_does_not_bank_a_burst(self):
        alias = self.alias()
        ratelimit.book_slot(alias, 10, now=1_000_000.0)
        # Long after the booked slot: the next slot is now, not in the past.
        self.assertEqual(ratelimit.book_slot(alias, 10, now=1_000_100.0), 1_000_100.0)

    def test_aliases_are_independent(self):
        first, second = self.alias(), self.alias()
        self.assertEqual(ratelimit.book_slot(first, 1, now=500.0), 500.0)
        self.assertEqual(ratelimit.book_slot(second, 1, now=500.0), 500.0)

    def test_across_threads(self):
        alias, rate = self.alias(), 1000.0
        slots: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def book() -> None:
            start.wait()
            for _ in range(25):
                slot = ratelimit.book_slot(alias, rate)
                with lock:
                    slots.append(slot)

        threads = [threading.Thread(target=book) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(len(slots), 200)
        self.assert_spaced(slots, rate)

    def test_across_processes(self):
        alias, rate = self.alias(), 500.0
        # fork: the children share this process's settings, hence the same state file.
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        children = [context.Process(target=_book_in_child, args=(alias, rate, 30, results)) for _ in range(2)]
        for child in children:
            child.start()
        own = [ratelimit.book_slot(alias, rate) for _ in range(30)]
        booked = [results.get(timeout=30) for _ in children]
        for child in children:
            child.join(timeout=30)
            self.assertEqual(child.exitcode, 0)
        slots = own + booked[0] + booked[1]
        self.assertEqual(len(slots), 90)
        self.assert_spaced(slots, rate)

    def test_wait_for_slot_sleeps_until_the_booked_slot(self):
        alias = self.alias()
        sleeps: list[float] = []
        with (
            self.settings(POST_OFFICE={"RATE_LIMITS": {alias: 2}}),
            mock.patch.object(ratelimit, "book_slot", side_effect=lambda a, r: ratelimit.time.time() + 0.5) as book,
            mock.patch("post_office.transport.ratelimit.time.sleep", side_effect=sleeps.append),
        ):
            ratelimit.wait_for_slot(alias)
        book.assert_called_once_with(alias, 2.0)
        self.assertEqual(len(sleeps), 1)
        self.assertGreater(sleeps[0], 0)
        self.assertLessEqual(sleeps[0], 0.5)

    def test_unlimited_alias_neither_books_nor_sleeps(self):
        with (
            self.settings(POST_OFFICE={"RATE_LIMITS": {"other": 5}}),
            mock.patch.object(ratelimit, "book_slot") as book,
            mock.patch("post_office.transport.ratelimit.time.sleep") as sleep,
        ):
            ratelimit.wait_for_slot("default")
        book.assert_not_called()
        sleep.assert_not_called()


class RateLimitedDeliveryTest(ControlsTestCase):
    def test_every_email_of_a_limited_alias_books_a_slot(self):
        self.queue_many(4, backend="scripted")
        self.queue_many(2, prefix="unlimited")
        booked: list[tuple[str, float]] = []

        def book(alias: str, rate: float) -> float:
            booked.append((alias, rate))
            return 0.0  # in the past: no sleep

        with self.po(RATE_LIMITS={"scripted": 14}), mock.patch.object(ratelimit, "book_slot", side_effect=book):
            stats = Worker(threads=3).run()
        self.assertEqual(stats.sent, 6)
        self.assertEqual(booked, [("scripted", 14.0)] * 4)


# -- connection caps --------------------------------------------------------------


class MaxConnectionsTest(ControlsTestCase):
    """The pool never has more than N connections open for an alias, whatever the thread count."""

    def deliver(self, count: int, threads: int, **settings) -> RunStats:
        self.queue_many(count, backend="counting")
        with self.po(**settings):
            return Worker(threads=threads, batch_size=100).run()

    def test_int_cap_with_more_threads(self):
        CountingBackend.reset(expect_parallel=2)
        stats = self.deliver(24, threads=6, MAX_CONNECTIONS=2)
        self.assertEqual(stats.sent, 24)
        self.assertEqual(CountingBackend.max_open, 2)
        # Connections are reused for the whole run, and all closed at its end.
        self.assertEqual(CountingBackend.opened, 2)
        self.assertEqual(CountingBackend.open_now, 0)

    def test_per_alias_cap(self):
        stats = self.deliver(12, threads=4, MAX_CONNECTIONS={"counting": 1, "default": 3})
        self.assertEqual(stats.sent, 12)
        self.assertEqual(CountingBackend.max_open, 1)

    def test_default_cap_is_one_per_thread(self):
        CountingBackend.reset(expect_parallel=3)
        stats = self.deliver(15, threads=3)
        self.assertEqual(stats.sent, 15)
        self.assertEqual(CountingBackend.max_open, 3)

    def test_broken_connection_is_replaced_within_the_cap(self):
        for i in range(3):
            self.queue(f"drop {i}", backend="counting")
        stats = self.deliver(12, threads=5, MAX_CONNECTIONS=2, MAX_RETRIES=0)
        self.assertEqual((stats.sent, stats.failed), (12, 3))
        self.assertLessEqual(CountingBackend.max_open, 2)
        # Each drop closed its connection (never reused); new ones took their place.
        self.assertGreaterEqual(CountingBackend.opened, 3)
        self.assertEqual(CountingBackend.open_now, 0)


# -- pause ------------------------------------------------------------------------


class LockedRowsTest(ControlsTestCase):
    """With SKIP LOCKED a claim can come back empty while another worker's claim holds due rows."""

    def claims_empty_first(self, empty: int) -> tuple[Any, list[int]]:
        original, calls = Worker.claim, []

        def claim(worker, limit, ids=None, skip_aliases=()):
            calls.append(limit)
            if len(calls) <= empty:
                return "someone-else", []  # as if another worker's open claim held every due row
            return original(worker, limit, ids=ids, skip_aliases=skip_aliases)

        return claim, calls

    def test_the_worker_looks_again_instead_of_stopping(self):
        self.queue_many(2)
        claim, calls = self.claims_empty_first(2)
        with (
            mock.patch.object(Worker, "claim", claim),
            mock.patch.object(connection.features, "has_select_for_update_skip_locked", True),
            mock.patch.object(pipeline, "LOCKED_RETRY_SECONDS", 0),
        ):
            stats = Worker(threads=1).run()
        self.assertEqual(stats.sent, 2)
        self.assertEqual(len(calls), 4)  # two empty claims, the one that took both, the last empty one

    def test_it_gives_up_after_a_few_tries(self):
        self.queue_many(1)
        claim, calls = self.claims_empty_first(100)
        with (
            mock.patch.object(Worker, "claim", claim),
            mock.patch.object(connection.features, "has_select_for_update_skip_locked", True),
            mock.patch.object(pipeline, "LOCKED_RETRY_SECONDS", 0),
        ):
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, len(calls)), (0, 1 + pipeline.LOCKED_RETRIES))
        self.assertEqual(self.counts()[STATUS.queued], 1)  # still there for the next run


class PauseTest(ControlsTestCase):
    def test_switch_stops_delivery_but_not_enqueue(self):
        DeliverySwitch.set_paused(True, "provider maintenance")
        self.assertTrue(DeliverySwitch.is_paused())
        email = self.queue("waits")
        stats = Worker().run()
        self.assertEqual(stats.attempted, 0)
        self.assertEqual(stats.stopped_because, "delivery is paused")
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.queued)
        self.assertEqual(DeliverySwitch.objects.get().reason, "provider maintenance")

        DeliverySwitch.set_paused(False)
        self.assertFalse(DeliverySwitch.is_paused())
        self.assertEqual(Worker().run().sent, 1)
        self.assertEqual(DeliverySwitch.objects.count(), 1)

    def test_setting(self):
        self.queue("waits")
        with self.po(PAUSED=True):
            self.assertTrue(DeliverySwitch.is_paused())
            self.assertEqual(Worker().run().attempted, 0)
            self.queue("queued while paused")
        self.assertEqual(Worker().run().sent, 2)

    def test_priority_now_waits_while_paused(self):
        DeliverySwitch.set_paused(True)
        with self.captureOnCommitCallbacks(execute=True):
            email = self.queue("urgent", priority="now")
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.queued)
        DeliverySwitch.set_paused(False)
        self.assertEqual(Worker().run().sent, 1)

    def test_pause_takes_effect_at_the_next_claim_once_the_switch_is_read(self):
        self.queue_many(6)
        # Paused right after the first claim: what was claimed is sent, nothing more is claimed.
        with (
            mock.patch.object(DeliverySwitch, "is_paused", side_effect=[False] + [True] * 10),
            mock.patch.object(delivery_worker, "PAUSE_CHECK_SECONDS", 0),
        ):
            stats = Worker(threads=1, batch_size=2).run()
        self.assertEqual(stats.sent, 2)
        self.assertEqual(stats.stopped_because, "delivery is paused")
        self.assertEqual(self.counts()[STATUS.queued], 4)
        self.assertEqual(self.counts()[STATUS.sending], 0)

    def test_a_pass_reads_the_switch_at_most_once_a_second(self):
        self.queue_many(30)
        with mock.patch.object(DeliverySwitch, "is_paused", return_value=False) as is_paused:
            worker = Worker(threads=1, batch_size=2)
            stats = worker.run()
        self.assertEqual(stats.sent, 30)  # 15 claims
        self.assertLessEqual(is_paused.call_count, 1 + int(stats.elapsed / delivery_worker.PAUSE_CHECK_SECONDS) + 1)


# -- signals and logs -------------------------------------------------------------


class SignalsTest(ControlsTestCase):
    def connect(self, signal) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def receiver(sender, **kwargs):
            kwargs.pop("signal")
            # Receivers run after the result is written.
            kwargs["stored_status"] = Email.objects.get(pk=kwargs["email"].pk).status
            calls.append({"sender": sender, **kwargs})

        signal.connect(receiver, weak=False)
        self.addCleanup(signal.disconnect, receiver)
        return calls

    def test_email_sent(self):
        calls = self.connect(email_sent)
        email = self.queue("hello")
        Worker(threads=1).run()
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0]["sender"], Email)
        self.assertEqual(calls[0]["email"].pk, email.pk)
        self.assertEqual(calls[0]["email"].status, STATUS.sent)
        self.assertEqual(calls[0]["stored_status"], STATUS.sent)
        self.assertEqual(set(calls[0]), {"sender", "email", "stored_status"})

    def test_email_failed_says_whether_it_will_be_retried(self):
        sent_calls = self.connect(email_sent)
        calls = self.connect(email_failed)
        refused, disconnected = permanent(), transient()
        ScriptedBackend.errors = {"refused": refused, "flaky": disconnected}
        with self.po(MAX_RETRIES=1, RETRY_INTERVAL=0):
            self.queue("refused", backend="scripted")
            self.queue("flaky", backend="scripted")
            Worker(threads=1).run()  # flaky: requeued, then due at once and failed for good
        self.assertEqual(sent_calls, [])
        seen = [(c["email"].subject, c["exception"], c["will_retry"], c["stored_status"]) for c in calls]
        self.assertCountEqual(
            seen,
            [
                ("refused", refused, False, STATUS.failed),
                ("flaky", disconnected, True, STATUS.requeued),
                ("flaky", disconnected, False, STATUS.failed),
            ],
        )
        self.assertEqual({c["sender"] for c in calls}, {Email})

    def test_priority_now_and_dispatch_send_signals_too(self):
        calls = self.connect(email_sent)
        with self.captureOnCommitCallbacks(execute=True):
            self.queue("urgent", priority="now")
        self.queue("dispatched").dispatch()
        self.assertEqual([c["email"].subject for c in calls], ["urgent", "dispatched"])

    def test_a_failing_receiver_does_not_stop_delivery(self):
        def broken(sender, **kwargs):
            raise RuntimeError("receiver bug")

        email_sent.connect(broken, weak=False)
        self.addCleanup(email_sent.disconnect, broken)
        self.queue_many(5)
        with self.assertLogs("post_office", logging.ERROR) as logs:
            stats = Worker(threads=1, batch_size=2).run()
        self.assertEqual(stats.sent, 5)
        self.assertEqual(self.counts()[STATUS.sent], 5)
        self.assertIn("receiver bug", "\n".join(logs.output))


class LoggingTest(ControlsTestCase):
    def test_failures_carry_structured_fields(self):
        ScriptedBackend.errors = {"refused": permanent(), "flaky": transient()}
        with self.po(MAX_RETRIES=2):
            refused = self.queue("refused", backend="scripted")
            flaky = self.queue("flaky", backend="scripted")
            with self.assertLogs("post_office", logging.WARNING) as logs:
                Worker(threads=1).run()
        failures = {r.email_id: r for r in logs.records if hasattr(r, "email_id")}
        self.assertEqual(set(failures), {refused.pk, flaky.pk})
        self.assertEqual(
            (failures[refused.pk].error_kind, failures[refused.pk].will_retry, failures[refused.pk].attempt),
            ("permanent", False, 1),
        )
        self.assertEqual(
            (failures[flaky.pk].error_kind, failures[flaky.pk].will_retry, failures[flaky.pk].attempt),
            ("transient", True, 1),
        )
        self.assertEqual(failures[refused.pk].levelno, logging.WARNING)
        self.assertIn(f"email {refused.pk}", failures[refused.pk].getMessage())
        self.assertIn("not retried", failures[refused.pk].getMessage())

    def test_one_summary_line_per_run(self):
        ScriptedBackend.errors = {"refused": permanent()}
        self.queue("refused", backend="scripted")
        self.queue_many(2)
        self.queue("late", expires_at=timezone.now() + datetime.timedelta(hours=1))
        Email.objects.filter(subject="late").update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
        with self.assertLogs("post_office", logging.INFO) as logs:
            Worker(threads=1, max_sent=2).run()
        summaries = [r for r in logs.records if r.getMessage().startswith("post_office run:")]
        self.assertEqual(len(summaries), 1)
        summary = summaries[0]
        self.assertEqual(summary.levelno, logging.INFO)
        self.assertEqual((summary.sent, summary.failed, summary.requeued, summary.expired), (2, 1, 0, 1))
        self.assertRegex(
            summary.getMessage(), r"2 sent, 1 failed, 0 requeued, 1 expired in [\d.]+s \([\d.]+ emails/s\)"
        )

    def test_summary_names_why_the_run_stopped(self):
        self.queue_many(3)
        with self.assertLogs("post_office", logging.INFO) as logs:
            Worker(threads=1, max_sent=1).run()
        self.assertIn("stopped: MAX_BATCH 1", logs.records[-1].getMessage())


class StoppedByAnErrorTest(ControlsTestCase):
    def test_emails_not_started_are_not_sent_after_the_loop_fails(self):
        # An error in the worker's own loop (here: its progress callback) ends the run.
        # The emails claimed but not started must not be sent with nobody to record them:
        # they stay claimed, and their lease returns them to the queue.
        def fail(stats: RunStats) -> None:
            raise RuntimeError("progress display broke")

        self.queue_many(20, backend="slow")
        with (
            mock.patch("post_office.delivery.pipeline.FLUSH_EVERY", 1),
            self.assertRaisesMessage(RuntimeError, "progress display broke"),
        ):
            Worker(threads=1, batch_size=100, on_progress=fail).run()
        # Only what was already under way when the loop failed was sent.
        self.assertLess(len(SlowBackend.sent), 20)
        self.assertEqual(self.counts()[STATUS.sent] + self.counts()[STATUS.sending], 20)
        # (Without cancelling them, the executor would go on and send all 20, and nobody would record them.)


class BatchTimeoutTest(ControlsTestCase):
    def test_a_timed_out_batch_gives_back_what_it_has_not_started(self):
        # One thread sends the whole batch one email after another, 20 ms each; the batch
        # times out after 100 ms: the email being sent finishes, the rest go back to the
        # queue unattempted and later claims send them. Each is sent once, none counts a retry.
        self.queue_many(20, backend="slow")
        with self.po(BATCH_DELIVERY_TIMEOUT=0.1), self.assertLogs("post_office", logging.ERROR) as logs:
            stats = Worker(threads=1, batch_size=100).run()
        self.assertIn("timed out", logs.records[0].getMessage())
        self.assertEqual(stats.sent, 20)
        self.assertEqual(sorted(SlowBackend.sent), sorted(set(SlowBackend.sent)))
        self.assertEqual(len(SlowBackend.sent), 20)
        self.assertEqual(set(Email.objects.values_list("number_of_retries", flat=True)), {0})


class SlowBackend(BaseEmailBackend):
    """Takes 20 ms per message, like a remote server (pacing only; nothing waits on it)."""

    sent: ClassVar[list[str]] = []

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        for message in email_messages:
            threading.Event().wait(0.02)
            type(self).sent.append(message.subject)
        return len(email_messages)


# -- the retry policy -------------------------------------------------------------


class ClassifyTest(SimpleTestCase):
    def assert_kind(self, kind: ErrorKind, *errors: BaseException) -> None:
        for error in errors:
            self.assertIs(retry.classify(error), kind, repr(error))

    def test_smtp_replies_by_code(self):
        self.assert_kind(
            ErrorKind.PERMANENT,
            smtplib.SMTPDataError(554, b"rejected"),
            smtplib.SMTPSenderRefused(553, b"bad sender", "from@example.com"),
            smtplib.SMTPResponseException(550, b"mailbox unavailable"),
        )
        self.assert_kind(
            ErrorKind.TRANSIENT,
            smtplib.SMTPDataError(451, b"try again later"),
            smtplib.SMTPSenderRefused(450, b"greylisted", "from@example.com"),
            smtplib.SMTPConnectError(421, b"too busy"),
            smtplib.SMTPHeloError(421, b"closing"),
        )

    def test_recipients_refused_is_permanent_only_when_every_code_is_5xx(self):
        self.assert_kind(
            ErrorKind.PERMANENT,
            smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (553, b"no")}),
        )
        self.assert_kind(
            ErrorKind.TRANSIENT,
            smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no"), "b@example.com": (450, b"busy")}),
            smtplib.SMTPRecipientsRefused({"a@example.com": (452, b"full")}),
            smtplib.SMTPRecipientsRefused({}),
        )

    def test_connection_trouble_is_transient(self):
        self.assert_kind(
            ErrorKind.TRANSIENT,
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            socket.timeout("timed out"),  # noqa: UP041 - the name socket code raises (an alias of TimeoutError)
            TimeoutError(),
            ConnectionRefusedError(111, "Connection refused"),
            ConnectionResetError(104, "reset by peer"),
            socket.gaierror(-2, "Name or service not known"),
            OSError("network unreachable"),
        )

    def test_template_and_input_errors_are_permanent(self):
        self.assert_kind(
            ErrorKind.PERMANENT,
            TemplateSyntaxError("bad tag"),
            TemplateDoesNotExist("emails/gone.html"),
            exceptions.UnknownTemplate("template", "gone", "does not exist"),
            exceptions.TemplateSyntaxInvalid({"subject": "line 1: bad tag"}),
            UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range"),
        )
        leaves = [
            cls
            for cls in vars(exceptions).values()
            if isinstance(cls, type) and issubclass(cls, exceptions.InvalidEmail)
        ]
        self.assertGreaterEqual(len(leaves), 12)
        self.assert_kind(ErrorKind.PERMANENT, *(cls("to", "bob@", "is not valid") for cls in leaves))

    def test_header_value_errors_are_permanent_other_value_errors_are_not(self):
        self.assert_kind(
            ErrorKind.PERMANENT,
            ValueError("Header values can't contain newlines (got 'a\\nb')"),
            ValueError("Invalid header name 'X Bad'"),
        )
        self.assert_kind(ErrorKind.TRANSIENT, ValueError("something else"), ZeroDivisionError(), RuntimeError("bug"))

    def test_django_bad_header_from_a_real_message(self):
        from django.core.mail import EmailMessage

        message = EmailMessage("ok", "body", "from@example.com", ["to@example.com"], headers={"X-Bad": "a\nb"})
        with self.assertRaises(ValueError) as caught:
            message.message()
        self.assert_kind(ErrorKind.PERMANENT, caught.exception)


class BackoffTest(SimpleTestCase):
    def backoff(self, retries: int, jitter: float = 1.0, **settings) -> float:
        config = {"RETRY_INTERVAL": 60, "MAX_RETRY_INTERVAL": 3600, **settings}
        with (
            self.settings(POST_OFFICE=config),
            mock.patch("post_office.delivery.retry.random.uniform", return_value=jitter) as u,
        ):
            delay = retry.backoff(retries).total_seconds()
        u.assert_called_once_with(0.5, 1.0)
        return delay

    def test_doubles_per_retry(self):
        self.assertEqual([self.backoff(n) for n in range(5)], [60, 120, 240, 480, 960])

    def test_capped(self):
        self.assertEqual(self.backoff(6), 3600)  # 60 * 64 would be 3840
        self.assertEqual(self.backoff(10_000), 3600)  # no overflow for absurd counts

    def test_jitter_keeps_between_half_and_all_of_the_delay(self):
        self.assertEqual(self.backoff(2, jitter=0.5), 120)
        self.assertEqual(self.backoff(2, jitter=0.75), 180)
        self.assertEqual(self.backoff(20, jitter=0.5), 1800)

    def test_real_jitter_stays_in_bounds(self):
        with self.settings(POST_OFFICE={"RETRY_INTERVAL": 100, "MAX_RETRY_INTERVAL": 10_000}):
            delays = [retry.backoff(1).total_seconds() for _ in range(200)]
        self.assertTrue(all(100 <= d <= 200 for d in delays), (min(delays), max(delays)))
        self.assertGreater(len(set(delays)), 1)

    def test_timedelta_settings(self):
        delay = self.backoff(
            1, RETRY_INTERVAL=datetime.timedelta(minutes=1), MAX_RETRY_INTERVAL=datetime.timedelta(minutes=90)
        )
        self.assertEqual(delay, 120)


def handler(email, error):
    """An ERROR_HANDLER for the tests: the subject says what to decide."""
    if email.subject.startswith("perm"):
        return "permanent"
    if email.subject.startswith("trans"):
        return ErrorKind.TRANSIENT
    if email.subject.startswith("broken"):
        raise RuntimeError("handler bug")
    if email.subject.startswith("junk"):
        return "maybe"
    return None


class ErrorHandlerTest(ControlsTestCase):
    def test_hook_overrides_the_classification(self):
        ScriptedBackend.errors = {
            "perm timeout": TimeoutError("timed out"),
            "trans 550": smtplib.SMTPDataError(550, b"mailbox full, really"),
            "default 451": smtplib.SMTPDataError(451, b"later"),
            "default 554": smtplib.SMTPDataError(554, b"no"),
        }
        with self.po(ERROR_HANDLER="tests.test_controls.handler", MAX_RETRIES=3):
            emails = {subject: self.queue(subject, backend="scripted") for subject in ScriptedBackend.errors}
            Worker(threads=1).run()
        result = {s: Email.objects.get(pk=e.pk).status for s, e in emails.items()}
        self.assertEqual(
            result,
            {
                "perm timeout": STATUS.failed,
                "trans 550": STATUS.requeued,
                "default 451": STATUS.requeued,
                "default 554": STATUS.failed,
            },
        )

    def test_hook_gets_the_email_and_the_error(self):
        error = transient()
        seen = []
        with (
            self.po(ERROR_HANDLER="tests.test_controls.handler"),
            mock.patch("tests.test_controls.handler", side_effect=lambda email, exc: seen.append((email.subject, exc))),
        ):
            ScriptedBackend.error_for_all = error
            self.queue("x", backend="scripted")
            Worker(threads=1).run()
        self.assertEqual(seen, [("x", error)])

    def test_unimportable_hook_is_a_configuration_error_before_any_email_is_claimed(self):
        self.queue("waits")
        with self.po(ERROR_HANDLER="tests.no_such_module.handler"):
            with self.assertRaisesMessage(ImproperlyConfigured, "POST_OFFICE['ERROR_HANDLER']"):
                retry.classify_for(Email(), transient())
            with self.assertRaises(ImproperlyConfigured):
                Worker().run()
        self.assertEqual(self.counts()[STATUS.queued], 1)
        self.assertEqual(django_mail.outbox, [])

    def test_a_failing_or_confused_hook_falls_back_to_the_default(self):
        # A bug in the hook must not lose the results of the emails around it.
        ScriptedBackend.errors = {"broken 554": permanent(), "junk 451": smtplib.SMTPDataError(451, b"later")}
        with self.po(ERROR_HANDLER="tests.test_controls.handler", MAX_RETRIES=3):
            broken = self.queue("broken 554", backend="scripted")
            junk = self.queue("junk 451", backend="scripted")
            fine = self.queue("fine", backend="scripted")
            with self.assertLogs("post_office", logging.ERROR) as logs:
                stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (1, 1, 1))
        self.assertEqual(Email.objects.get(pk=broken.pk).status, STATUS.failed)
        self.assertEqual(Email.objects.get(pk=junk.pk).status, STATUS.requeued)
        self.assertEqual(Email.objects.get(pk=fine.pk).status, STATUS.sent)
        self.assertIn("ERROR_HANDLER", "\n".join(logs.output))


class RequeueFlushTest(ControlsTestCase):
    """Requeued emails written together each get their own jittered retry time, in one UPDATE."""

    def test_one_update_with_per_email_times(self):
        emails = self.queue_many(3, backend="scripted")
        for email, retries in zip(emails, (0, 1, 2)):
            Email.objects.filter(pk=email.pk).update(number_of_retries=retries)
        worker = Worker(threads=1, log_level=1)
        token, claimed = worker.claim(10)
        self.assertEqual(len(claimed), 3)
        jitters = [1.0, 0.9, 0.6]
        with self.po(RETRY_INTERVAL=60, MAX_RETRY_INTERVAL=3600, MAX_RETRIES=5):
            with mock.patch("post_office.delivery.retry.random.uniform", side_effect=jitters):
                before = timezone.now()
                # A savepoint, one UPDATE for all three, one Log INSERT, the release.
                with self.assertNumQueries(4), CaptureQueriesContext(connection) as queries:
                    worker.record(token, [Outcome(email, transient()) for email in claimed])
                after = timezone.now()
        updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
        self.assertEqual(len(updates), 1, updates)
        expected_delays = {0: 60 * 1.0, 1: 120 * 0.9, 2: 240 * 0.6}
        times = []
        for email in Email.objects.filter(pk__in=[e.pk for e in emails]).order_by("pk"):
            self.assertEqual(email.status, STATUS.requeued)
            delay = datetime.timedelta(seconds=expected_delays[email.number_of_retries - 1])
            self.assertGreaterEqual(email.scheduled_time, before + delay)
            self.assertLessEqual(email.scheduled_time, after + delay)
            self.assertEqual((email.claimed_by, email.lease_expires_at), ("", None))
            times.append(email.scheduled_time)
        self.assertEqual(len(set(times)), 3)
        self.assertEqual([e.number_of_retries for e in Email.objects.order_by("pk")], [1, 2, 3])
        self.assertEqual(Log.objects.filter(status=STATUS.failed).count(), 3)


class RetryInTheSameRunTest(ControlsTestCase):
    def test_email_due_again_at_once_is_retried_whenever_its_failure_was_written(self):
        # FLUSH_SECONDS = 0 writes every result as soon as it comes in, so the failure is
        # already written when the batch ends: the run must still look for it again.
        ScriptedBackend.errors = {"flaky": transient()}
        with self.po(MAX_RETRIES=2, RETRY_INTERVAL=0), mock.patch("post_office.delivery.pipeline.FLUSH_SECONDS", 0):
            email = self.queue("flaky", backend="scripted")
            self.queue("fine", backend="scripted")
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.requeued, stats.failed), (1, 2, 1))
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.failed)
        self.assertEqual(ScriptedBackend.attempts.count("flaky"), 3)


class ErrorHandlerCheckTest(TestCase):
    def test_unimportable_error_handler_is_a_system_check_error(self):
        from post_office.checks import check_settings

        with self.settings(POST_OFFICE={"ERROR_HANDLER": "no.such.module.handler"}):
            self.assertIn("post_office.E010", [message.id for message in check_settings()])
        self.assertNotIn("post_office.E010", [message.id for message in check_settings()])
