"""CELERY_ENABLED: queueing email triggers the Celery delivery task after commit."""

from __future__ import annotations

from celery import Celery
from django.core import mail as django_mail
from django.test import TestCase, override_settings

from post_office import mail, tasks
from post_office.health import report
from post_office.models import STATUS, Email, WorkerHeartbeat


class CeleryTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # An eager app runs the task in-process, as a worker would.
        cls.app = Celery("post_office_tests", set_as_current=True)
        cls.app.conf.task_always_eager = True

    def test_task_delivers_after_commit_when_enabled(self):
        with override_settings(POST_OFFICE={"CELERY_ENABLED": True}):
            with self.captureOnCommitCallbacks(execute=False) as callbacks:
                mail.send("a@example.com", subject="via celery", message="m")
            self.assertEqual(django_mail.outbox, [])
            for callback in callbacks:
                callback()
        self.assertEqual([m.subject for m in django_mail.outbox], ["via celery"])
        self.assertEqual(Email.objects.get().status, STATUS.sent)

    def test_nothing_happens_when_disabled(self):
        with self.captureOnCommitCallbacks(execute=True):
            mail.send("a@example.com", subject="cron", message="m")
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(Email.objects.get().status, STATUS.queued)

    def test_task_is_registered_under_its_name(self):
        self.assertEqual(tasks.send_queued_mail.name, "post_office.tasks.send_queued_mail")
        mail.send("a@example.com", subject="direct", message="m")
        self.assertEqual(tasks.send_queued_mail.delay().get(), {"sent": 1, "failed": 0, "requeued": 0})

    def test_the_task_leaves_a_heartbeat_the_health_report_reads(self):
        mail.send("a@example.com", subject="direct", message="m")
        tasks.send_queued_mail.delay().get()
        beat = WorkerHeartbeat.objects.get(name__startswith="celery@")
        self.assertEqual((beat.state, beat.sent, beat.failed), ("finished", 1, 0))
        worker = next(w for w in report().workers if w.name == beat.name)
        self.assertEqual(worker.kind, "celery")
