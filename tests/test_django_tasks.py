"""TASKS_ENABLED: one Django Tasks delivery task per commit that queued mail, deferred runs, system checks.

These run on the framework's dummy and immediate backends (``django.tasks`` on Django 6.x, the
django-tasks backport on 5.2); tests/tasks_workers/ runs django-tasks-db's real ``db_worker``.
"""

from __future__ import annotations

import datetime
import importlib
import subprocess
import sys
from pathlib import Path
from unittest import mock

from django.core import mail as django_mail
from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from post_office import django_tasks, mail
from post_office.health import report
from post_office.models import STATUS, Email, WorkerHeartbeat
from tests.helpers import queueing

FRAMEWORK = django_tasks.framework().__name__  # "django.tasks" or "django_tasks"
importlib.import_module(f"{FRAMEWORK}.signals")  # its receiver resets the backends when TASKS changes
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
ROOT = Path(__file__).resolve().parent.parent


def tasks_on(backend: str = DUMMY, queues: list[str] | None = None, **post_office):
    """TASKS with one ``mail`` alias on ``backend`` (queue ``emails``), and POST_OFFICE enqueueing there."""
    options = {"TASKS_ENABLED": True, "TASKS_BACKEND": "mail", "TASKS_QUEUE": "emails", **post_office}
    tasks = {
        "default": {"BACKEND": IMMEDIATE},
        "mail": {"BACKEND": backend, "QUEUES": queues if queues is not None else ["emails"]},
    }
    return override_settings(TASKS=tasks), queueing(**options)


class TasksMixin:
    def setUp(self):
        super().setUp()
        django_tasks._slots.clear()
        tasks_settings, post_office = tasks_on()
        for manager in (tasks_settings, post_office):
            manager.enable()
            self.addCleanup(manager.disable)

    def results(self):
        return django_tasks.framework().task_backends["mail"].results

    def send(self, subject: str, **kwargs):
        return mail.send("to@example.com", "from@example.com", subject=subject, message="m", **kwargs)


class TasksTestCase(TasksMixin, TestCase):
    pass


class TriggerTest(TasksTestCase):
    def test_one_task_per_commit_not_per_email(self):
        with self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                for i in range(3):
                    self.send(f"mail {i}")
                mail.send_many([{"recipients": ["b@example.com"], "subject": "bulk", "message": "m"}] * 5)
        self.assertEqual(len(self.results()), 1)
        result = self.results()[0]
        self.assertEqual(result.task.module_path, django_tasks.TASK_PATH)
        self.assertEqual((result.task.queue_name, result.task.backend, result.task.priority), ("emails", "mail", 0))
        self.assertIsNone(result.task.run_after)
        self.assertEqual((result.args, result.kwargs), ([], {}))

    def test_nothing_before_the_commit_and_nothing_after_a_rollback(self):
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            self.send("pending")
        self.assertEqual(self.results(), [])  # not before the commit
        with self.captureOnCommitCallbacks(execute=True):
            try:
                with transaction.atomic():
                    self.send("rolled back")
                    raise RuntimeError("rollback")
            except RuntimeError:
                pass
        self.assertEqual(self.results(), [])
        self.assertFalse(Email.objects.filter(subject="rolled back").exists())
        for callback in callbacks:  # the first transaction commits now
            callback()
        self.assertEqual(len(self.results()), 1)

    def test_priority_and_queue_come_from_the_settings(self):
        with override_settings(POST_OFFICE={**django_tasks.po_settings.raw, "TASKS_PRIORITY": -7}):
            with self.captureOnCommitCallbacks(execute=True):
                self.send("prioritised")
        self.assertEqual(self.results()[0].task.priority, -7)

    def test_nothing_is_enqueued_when_disabled(self):
        with override_settings(POST_OFFICE={**django_tasks.po_settings.raw, "TASKS_ENABLED": False}):
            with self.captureOnCommitCallbacks(execute=True):
                self.send("cron")
        self.assertEqual(self.results(), [])

    def test_a_backend_that_refuses_is_logged_and_the_mail_stays_queued(self):
        with override_settings(POST_OFFICE={**django_tasks.po_settings.raw, "TASKS_QUEUE": "nope"}):
            with self.assertLogs("post_office", "ERROR") as logs, self.captureOnCommitCallbacks(execute=True):
                email = self.send("kept")
        self.assertIn("Could not enqueue the post_office delivery task", logs.output[0])
        self.assertIn("nope", logs.output[0])
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.queued)

    def test_the_task_name_resolves_to_the_task(self):
        task = django_tasks.send_queued_mail
        found = importlib.import_module("django.utils.module_loading").import_string(task.module_path)
        self.assertEqual(found.func, task.func)
        self.assertEqual(task.name, "send_queued_mail")
        with self.assertRaises(AttributeError):
            django_tasks.no_such_task  # noqa: B018


class AutocommitTriggerTest(TasksMixin, TransactionTestCase):
    def test_each_commit_in_autocommit_gets_its_task(self):
        self.send("one")
        self.send("two")
        with transaction.atomic():
            self.send("three")
            self.send("four")
        self.assertEqual(len(self.results()), 3)


class TaskRunTest(TasksTestCase):
    def test_a_run_delivers_through_the_engine_and_leaves_a_heartbeat(self):
        self.send("one")
        self.send("two")
        outcome = django_tasks.send_queued_mail.call()
        self.assertEqual(outcome, {"sent": 2, "failed": 0, "requeued": 0})
        self.assertEqual(sorted(m.subject for m in django_mail.outbox), ["one", "two"])
        beat = WorkerHeartbeat.objects.get(name__startswith="django_tasks@")
        self.assertEqual((beat.state, beat.sent), ("finished", 2))
        self.assertEqual(next(w for w in report().workers if w.name == beat.name).kind, "django_tasks")
        # Nothing left for later: no deferred run.
        self.assertEqual(self.results(), [])

    def test_a_second_run_sends_nothing_twice(self):
        self.send("once")
        django_tasks.send_queued_mail.call()
        self.assertEqual(django_tasks.send_queued_mail.call(), {"sent": 0, "failed": 0, "requeued": 0})
        self.assertEqual(len(django_mail.outbox), 1)

    def test_immediate_backend_delivers_at_commit(self):
        tasks_settings, post_office = tasks_on(IMMEDIATE)
        with tasks_settings, post_office, self.captureOnCommitCallbacks(execute=True):
            self.send("right away")
        self.assertEqual([m.subject for m in django_mail.outbox], ["right away"])


class DeferredRunTest(TasksTestCase):
    def test_scheduled_mail_gets_one_run_deferred_to_its_time(self):
        later = timezone.now() + datetime.timedelta(hours=1)
        self.send("later", scheduled_time=later)
        django_tasks.send_queued_mail.call()
        django_tasks.send_queued_mail.call()  # a second run ending now defers nothing more
        self.assertEqual(len(self.results()), 1)
        deferred = self.results()[0]
        self.assertEqual(deferred.kwargs, {"pickup": True})
        self.assertGreaterEqual(deferred.task.run_after, later)
        self.assertLessEqual(deferred.task.run_after, later + datetime.timedelta(seconds=2))
        self.assertEqual((deferred.task.queue_name, deferred.task.backend), ("emails", "mail"))

    def test_a_retried_email_is_picked_up_after_its_backoff(self):
        email = self.send("retry")
        Email.objects.filter(pk=email.pk).update(
            status=STATUS.requeued, scheduled_time=timezone.now() + datetime.timedelta(minutes=15)
        )
        when = django_tasks.schedule_pickup()
        self.assertIsNotNone(when)
        self.assertEqual(self.results()[0].task.run_after, when)

    def test_a_held_lease_gets_a_run_after_it_ends(self):
        email = self.send("held")
        lease_end = timezone.now() + datetime.timedelta(seconds=10)
        Email.objects.filter(pk=email.pk).update(status=STATUS.sending, claimed_by="dead:1", lease_expires_at=lease_end)
        when = django_tasks.schedule_pickup()
        self.assertGreater(when, lease_end)
        self.assertLessEqual(when, lease_end + datetime.timedelta(seconds=3))

    def test_due_mail_left_waits_empty_queue_sleep(self):
        self.send("due")
        now = timezone.now()
        when = django_tasks.next_pickup(now)
        self.assertEqual(when, now + datetime.timedelta(seconds=30))

    def test_nothing_waiting_means_no_deferred_run(self):
        self.assertIsNone(django_tasks.schedule_pickup())
        self.send("expired", expires_at=timezone.now() + datetime.timedelta(seconds=1))
        self.assertIsNone(django_tasks.next_pickup(timezone.now() + datetime.timedelta(seconds=5)))

    def test_no_deferred_run_on_a_backend_that_cannot_defer(self):
        self.send("later", scheduled_time=timezone.now() + datetime.timedelta(hours=1))
        tasks_settings, post_office = tasks_on(IMMEDIATE)
        with tasks_settings, post_office:
            self.assertIsNone(django_tasks.schedule_pickup())


class TasksChecksTest(TestCase):
    def messages(self, backend: str = DUMMY, queues: list[str] | None = None, **options):
        tasks_settings, post_office = tasks_on(backend, queues, **options)
        with tasks_settings, post_office:
            return [(m.id, m.msg) for m in django_tasks.check_tasks()]

    def test_a_backend_with_workers_passes(self):
        self.assertEqual(self.messages(), [])

    def test_disabled_checks_nothing(self):
        self.assertEqual(self.messages(TASKS_ENABLED=False, TASKS_BACKEND="missing"), [])

    def test_immediate_backend_warns_it_delivers_in_the_request_and_cannot_defer(self):
        ids = [i for i, _ in self.messages(IMMEDIATE)]
        self.assertEqual(ids, ["post_office.W050", "post_office.W051"])

    def test_what_the_backend_refuses_is_an_error_naming_it(self):
        for options, text in (
            ({"TASKS_QUEUE": "other"}, "Queue 'other' is not valid"),
            ({"TASKS_BACKEND": "missing"}, "missing"),
            ({"TASKS_PRIORITY": 500}, "TASKS_PRIORITY"),
            ({"TASKS_PRIORITY": "high"}, "TASKS_PRIORITY"),
            ({"TASKS_QUEUE": ""}, "TASKS_QUEUE"),
        ):
            with self.subTest(options):
                (found,) = self.messages(**options)
                self.assertEqual(found[0], "post_office.E051")
                self.assertIn(text, found[1])

    def test_no_framework_is_an_error(self):
        with mock.patch.object(django_tasks.importlib, "import_module", side_effect=ImportError("no module")):
            (found,) = self.messages()
        self.assertEqual(found[0], "post_office.E050")
        self.assertIn("django-post-office-ng[tasks]", found[1])


class ImportTimeTest(TestCase):
    def test_the_app_imports_with_a_backend_that_refuses_the_default_queue(self):
        """A module-level @task would be validated against TASKS at import; this app's task is built on use."""
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--settings=tests.tasks_settings"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**__import__("os").environ, "POST_OFFICE_TEST_DB": "sqlite"},
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("no issues", result.stdout)
