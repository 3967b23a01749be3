"""CELERY_ENABLED: one delivery task per commit that queued email, after it commits; the periodic tasks.

Tasks run eagerly here (in-process, as a worker would); where only what is sent
to the broker matters, ``apply_async`` is mocked. tests/celery_workers/ runs real
``celery worker`` processes against Redis and RabbitMQ (``make test-celery``).
"""

from __future__ import annotations

import datetime
from unittest import mock

from celery import Celery
from django.core import mail as django_mail
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from post_office import mail, tasks
from post_office.checks import check_settings
from post_office.delivery import claim as claim_module
from post_office.enqueue import commit
from post_office.health import report
from post_office.models import STATUS, Email, Log, WorkerHeartbeat
from post_office.signals import queue_committed
from tests.helpers import LOCMEM, QueueTestMixin


class EagerApp:
    """An eager Celery app: a task runs in-process when it is sent."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = Celery("post_office_tests", set_as_current=True)
        cls.app.conf.task_always_eager = True


class CeleryTest(EagerApp, QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_task_delivers_after_commit_when_enabled(self):
        with self.po(CELERY_ENABLED=True):
            with self.captureOnCommitCallbacks(execute=False) as callbacks:
                self.queue("via celery")
            self.assertEqual(django_mail.outbox, [], "nothing is sent before the commit")
            for callback in callbacks:
                callback()
        self.assertEqual([m.subject for m in django_mail.outbox], ["via celery"])
        self.assertEqual(Email.objects.get().status, STATUS.sent)

    def test_nothing_happens_when_disabled(self):
        with self.captureOnCommitCallbacks(execute=True):
            self.queue("cron")
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(Email.objects.get().status, STATUS.queued)

    def test_task_is_registered_under_its_name(self):
        self.assertEqual(tasks.send_queued_mail.name, "post_office.tasks.send_queued_mail")
        self.queue("direct")
        self.assertEqual(tasks.send_queued_mail.delay().get(), {"sent": 1, "failed": 0, "requeued": 0})

    def test_the_task_leaves_a_heartbeat_the_health_report_reads(self):
        self.queue("direct")
        tasks.send_queued_mail.delay().get()
        beat = WorkerHeartbeat.objects.get(name__startswith="celery@")
        self.assertEqual((beat.state, beat.sent, beat.failed), ("finished", 1, 0))
        worker = next(w for w in report().workers if w.name == beat.name)
        self.assertEqual(worker.kind, "celery")

    def test_every_task_is_acks_late_and_rejected_when_its_worker_is_lost(self):
        for task in (
            tasks.send_queued_mail,
            tasks.send_priority_mail,
            tasks.recover_leases,
            tasks.cleanup_mail,
            tasks.purge_mail_log,
        ):
            with self.subTest(task.name):
                self.assertTrue(task.acks_late)
                self.assertTrue(task.reject_on_worker_lost)
                self.assertTrue(task.ignore_result)

    def test_the_priority_task_sends_only_its_emails_and_nothing_another_worker_holds(self):
        mine = self.queue("high one", priority="high")
        held = self.queue("held by another worker", priority="high")
        self.queue("bulk")
        Email.objects.filter(pk=held.pk).update(
            status=STATUS.sending, claimed_by="other:token", lease_expires_at=timezone.now() + datetime.timedelta(60)
        )
        result = tasks.send_priority_mail.delay([mine.pk, held.pk]).get()
        self.assertEqual(result, {"sent": 1, "failed": 0, "requeued": 0})
        self.assertEqual([m.subject for m in django_mail.outbox], ["high one"])
        self.assertEqual(Email.objects.get(pk=held.pk).status, STATUS.sending)

    def test_the_priority_task_sends_in_chunks(self):
        ids = [self.queue(f"high {i}", priority="high").pk for i in range(5)]
        with mock.patch.object(tasks, "PRIORITY_CHUNK", 2), mock.patch.object(
            claim_module, "claim", wraps=claim_module.claim
        ) as claim:
            tasks.send_priority_mail.delay(ids).get()
        self.assertEqual([len(call.args[3]) for call in claim.call_args_list], [2, 2, 1])
        self.assertEqual(len(django_mail.outbox), 5)

    def test_recover_leases_puts_a_dead_workers_emails_back_and_delivers_them(self):
        email = self.queue("claimed by a dead worker")
        Email.objects.filter(pk=email.pk).update(
            status=STATUS.sending, claimed_by="dead:token", lease_expires_at=timezone.now() - datetime.timedelta(1)
        )
        self.assertEqual(tasks.recover_leases.delay().get(), 1)
        self.assertEqual(Email.objects.get().status, STATUS.sent)
        self.assertEqual([m.subject for m in django_mail.outbox], ["claimed by a dead worker"])
        self.assertEqual(tasks.recover_leases.delay().get(), 0)

    def test_purge_mail_log_deletes_old_logs_of_the_result_asked(self):
        email = self.queue("logged")
        old = timezone.now() - datetime.timedelta(days=40)
        Log.objects.create(email=email, status=STATUS.sent, message="ok")
        Log.objects.create(email=email, status=STATUS.failed, message="no")
        Log.objects.update(date=old)
        self.assertEqual(tasks.purge_mail_log.delay(days=60).get(), 0)
        self.assertEqual(tasks.purge_mail_log.delay(days=30).get(), 1)
        self.assertEqual(list(Log.objects.values_list("status", flat=True)), [STATUS.failed])
        self.assertEqual(tasks.purge_mail_log.delay(days=30, result="all").get(), 1)

    def test_the_beat_schedule_names_registered_tasks_on_the_configured_queue(self):
        with self.po(CELERY_QUEUE="mail"):
            schedule = tasks.beat_schedule()
        self.assertEqual(
            {entry["task"] for entry in schedule.values()},
            {
                "post_office.tasks.send_queued_mail",
                "post_office.tasks.recover_leases",
                "post_office.tasks.cleanup_mail",
                "post_office.tasks.purge_mail_log",
            },
        )
        for entry in schedule.values():
            self.assertIn(entry["task"], self.app.tasks)
            self.assertEqual(entry["options"], {"queue": "mail"})
        self.assertEqual({e["options"].get("queue") for e in tasks.beat_schedule().values()}, {None})

    def test_a_pass_queues_one_more_only_with_more_than_a_batch_due(self):
        for i in range(3):
            self.queue(f"m{i}")
        with self.po(BATCH_SIZE=3):
            self.assertFalse(tasks.more_than_a_batch_due())
        with self.po(BATCH_SIZE=2):
            self.assertTrue(tasks.more_than_a_batch_due())
            with mock.patch.object(tasks.send_queued_mail, "apply_async") as apply_async:
                # As a worker runs it (not eagerly): the second pass goes to the broker.
                tasks.send_queued_mail.push_request(is_eager=False)
                try:
                    tasks.send_queued_mail.run()
                finally:
                    tasks.send_queued_mail.pop_request()
        apply_async.assert_called_once_with()
        self.assertEqual(len(django_mail.outbox), 3)

    def test_queued_mail_handler_starts_a_pass(self):
        self.queue("queued")
        with self.po(CELERY_ENABLED=True):
            tasks.queued_mail_handler(Email, emails=[])
        self.assertEqual([m.subject for m in django_mail.outbox], ["queued"])


class TriggerTest(QueueTestMixin, TestCase):
    """What a commit sends to the broker (``apply_async`` mocked)."""

    backends = {"default": LOCMEM}

    def setUp(self):
        super().setUp()
        bulk = mock.patch.object(tasks.send_queued_mail, "apply_async")
        priority = mock.patch.object(tasks.send_priority_mail, "apply_async")
        self.bulk, self.priority = bulk.start(), priority.start()
        self.addCleanup(bulk.stop)
        self.addCleanup(priority.stop)

    def test_one_task_per_commit_however_many_sends(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True) as callbacks:
            with transaction.atomic():
                for i in range(5):
                    self.queue(f"m{i}")
                mail.send_many([{"recipients": ["a@example.com"], "subject": "many", "message": "m"}] * 3)
                self.bulk.assert_not_called()
        self.bulk.assert_called_once_with()
        self.priority.assert_not_called()
        # One email_queued per call (6), one queue_committed for the transaction.
        self.assertEqual(sum(isinstance(c, commit.Commit) for c in callbacks), 1)

    def test_rollback_sends_no_task(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True) as callbacks:
            try:
                with transaction.atomic():
                    self.queue("rolled back", priority="high")
                    raise RuntimeError("rollback")
            except RuntimeError:
                pass
        self.assertEqual(callbacks, [])
        self.bulk.assert_not_called()
        self.priority.assert_not_called()
        self.assertFalse(Email.objects.exists())

    def test_a_savepoint_rolled_back_with_the_announcement_gets_a_new_one(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        self.queue("rolled back", priority="high")
                        raise RuntimeError("rollback")
                except RuntimeError:
                    pass
                kept = self.queue("kept", priority="high")
        self.priority.assert_called_once_with(args=([kept.pk],))
        self.bulk.assert_not_called()

    def test_high_priority_goes_to_the_priority_queue_by_id(self):
        options = {"CELERY_ENABLED": True, "CELERY_QUEUE": "bulk", "CELERY_PRIORITY_QUEUE": "urgent"}
        with self.po(**options), self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                first = self.queue("h1", priority="high")
                second = self.queue("h2", priority="high")
        self.priority.assert_called_once_with(args=([first.pk, second.pk],), queue="urgent")
        self.bulk.assert_not_called()

    def test_a_mixed_commit_starts_both(self):
        options = {"CELERY_ENABLED": True, "CELERY_QUEUE": "bulk", "CELERY_PRIORITY_QUEUE": "urgent"}
        with self.po(**options), self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                high = self.queue("h", priority="high")
                self.queue("m", priority="medium")
                self.queue("l", priority="low")
        self.priority.assert_called_once_with(args=([high.pk],), queue="urgent")
        self.bulk.assert_called_once_with(queue="bulk")

    def test_the_priority_queue_defaults_to_the_queue_and_options_are_passed_on(self):
        options = {"CELERY_ENABLED": True, "CELERY_QUEUE": "mail", "CELERY_TASK_OPTIONS": {"routing_key": "mail.x"}}
        with self.po(**options), self.captureOnCommitCallbacks(execute=True):
            high = self.queue("h", priority="high")
        self.priority.assert_called_once_with(args=([high.pk],), queue="mail", routing_key="mail.x")

    def test_now_mail_is_sent_by_the_queueing_process_and_needs_no_task(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True):
            self.queue("now", priority="now")
        self.bulk.assert_not_called()
        self.priority.assert_not_called()
        self.assertEqual(Email.objects.get().status, STATUS.sent)

    def test_many_high_priority_emails_start_a_pass_instead(self):
        with mock.patch.object(commit, "HIGH_IDS_LIMIT", 2):
            with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True):
                mail.send_many(
                    [{"recipients": ["a@example.com"], "subject": "h", "message": "m", "priority": "high"}] * 3
                )
        self.priority.assert_not_called()
        self.bulk.assert_called_once_with()

    def test_an_unreachable_broker_is_logged_and_the_mail_stays_queued(self):
        self.bulk.side_effect = OSError("Connection refused")
        with self.po(CELERY_ENABLED=True), self.assertLogs("post_office", "ERROR") as logs:
            with self.captureOnCommitCallbacks(execute=True):
                self.queue("waits")
        self.assertIn("Connection refused", logs.output[0])
        self.assertEqual(Email.objects.get().status, STATUS.queued)

    def test_mail_create_announces_nothing(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True):
            mail.create(sender="a@example.com", recipients=["b@example.com"], subject="created", message="m")
        self.bulk.assert_not_called()

    def test_the_signal_counts_priorities(self):
        received = []
        queue_committed.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="test_counts")
        self.addCleanup(queue_committed.disconnect, dispatch_uid="test_counts")
        with self.captureOnCommitCallbacks(execute=True), transaction.atomic():
            high = self.queue("h", priority="high")
            self.queue("n", priority="now")
            self.queue("m")
        self.assertEqual(len(received), 1)
        self.assertEqual(received[0]["count"], 3)
        self.assertEqual(received[0]["by_priority"], {"high": 1, "now": 1, "medium": 1})
        self.assertEqual(received[0]["high"], [high.pk])


class CelerySettingsTest(TestCase):
    def test_bad_queue_names_and_options_are_refused_with_the_key(self):
        cases = [
            ({"CELERY_QUEUE": ""}, "POST_OFFICE['CELERY_QUEUE'] must be the name of a Celery queue, not ''."),
            ({"CELERY_PRIORITY_QUEUE": 5}, "POST_OFFICE['CELERY_PRIORITY_QUEUE'] must be the name of a Celery queue"),
            ({"CELERY_TASK_OPTIONS": ["x"]}, "POST_OFFICE['CELERY_TASK_OPTIONS'] must be a dict of apply_async"),
            ({"CELERY_TASK_OPTIONS": {"queue": "x"}}, "options without 'queue' (set CELERY_QUEUE"),
        ]
        for settings, message in cases:
            with self.subTest(settings), override_settings(POST_OFFICE=settings):
                with self.assertRaisesMessage(ImproperlyConfigured, message):
                    tasks.task_options(priority=True)
                errors = [e for e in check_settings() if e.id == "post_office.E030"]
                self.assertEqual(len(errors), 1)
                self.assertIn(message, errors[0].msg)

    def test_good_settings_pass_the_check(self):
        settings = {"CELERY_QUEUE": "mail", "CELERY_PRIORITY_QUEUE": "urgent", "CELERY_TASK_OPTIONS": {"priority": 5}}
        with override_settings(POST_OFFICE=settings):
            self.assertEqual([e for e in check_settings() if e.id == "post_office.E030"], [])
            self.assertEqual(tasks.task_options(), {"priority": 5, "queue": "mail"})
            self.assertEqual(tasks.task_options(priority=True), {"priority": 5, "queue": "urgent"})


class CommitOnRealTransactionsTest(EagerApp, QueueTestMixin, TransactionTestCase):
    """Real commits and rollbacks (no captured callbacks), tasks run eagerly."""

    backends = {"default": LOCMEM}

    def test_rollback_no_email_commit_one_pass(self):
        with self.po(CELERY_ENABLED=True), mock.patch.object(
            tasks, "run_delivery", wraps=tasks.run_delivery
        ) as run_delivery:
            try:
                with transaction.atomic():
                    self.queue("rolled back")
                    raise RuntimeError("rollback")
            except RuntimeError:
                pass
            run_delivery.assert_not_called()
            with transaction.atomic():
                for i in range(3):
                    self.queue(f"kept {i}")
                run_delivery.assert_not_called()
        run_delivery.assert_called_once_with()
        self.assertEqual(sorted(m.subject for m in django_mail.outbox), ["kept 0", "kept 1", "kept 2"])

    def test_in_autocommit_each_send_is_its_own_commit(self):
        with self.po(CELERY_ENABLED=True), mock.patch.object(tasks.send_queued_mail, "apply_async") as bulk:
            self.queue("one")
            bulk.assert_called_once_with()
            self.queue("two")
        self.assertEqual(bulk.call_count, 2)
