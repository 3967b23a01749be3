"""POST_OFFICE settings: defaults, lazy reading, and the keys that change behaviour."""

from __future__ import annotations

import datetime
import shutil
import tempfile

from django.core import mail as django_mail
from django.core.files.base import ContentFile
from django.test import TestCase, override_settings

from post_office import mail
from post_office.conf import settings as po_settings
from post_office.delivery import Worker
from post_office.models import PRIORITY, Email


class DefaultsTest(TestCase):
    @override_settings(POST_OFFICE=None)
    def test_defaults(self):
        self.assertEqual(po_settings.BATCH_SIZE, 100)
        self.assertEqual(po_settings.DEFAULT_PRIORITY, "medium")
        self.assertEqual(po_settings.LOG_LEVEL, 2)
        self.assertEqual(po_settings.MAX_RETRIES, 5)  # django-post_office: 0
        self.assertEqual(po_settings.MAX_RETRY_INTERVAL, datetime.timedelta(hours=6))
        self.assertEqual(po_settings.RETRY_INTERVAL, datetime.timedelta(minutes=15))
        self.assertFalse(po_settings.MESSAGE_ID_ENABLED)
        self.assertEqual(po_settings.SENDING_ORDER, ["-priority"])
        self.assertIsNone(po_settings.OVERRIDE_RECIPIENTS)
        self.assertEqual(po_settings.FILE_STORAGE, "default")
        self.assertFalse(po_settings.CELERY_ENABLED)
        self.assertEqual(po_settings.THREADS_PER_PROCESS, 32)  # django-post_office: 5
        self.assertEqual(po_settings.BATCH_DELIVERY_TIMEOUT, 180)
        self.assertEqual(po_settings.LEASE_SECONDS, 10)  # renewed by a live worker (issue 10, 4)

    def test_settings_are_read_lazily(self):
        with override_settings(POST_OFFICE={"BATCH_SIZE": 7, "RETRY_INTERVAL": 30}):
            self.assertEqual(po_settings.BATCH_SIZE, 7)
            self.assertEqual(po_settings.RETRY_INTERVAL, datetime.timedelta(seconds=30))
        self.assertEqual(po_settings.BATCH_SIZE, 100)


class BehaviourTest(TestCase):
    def test_sending_order_setting(self):
        mail.send("a@example.com", subject="low", message="m", priority="low")
        mail.send("a@example.com", subject="high", message="m", priority="high")
        with override_settings(POST_OFFICE={"SENDING_ORDER": ["priority"], "THREADS_PER_PROCESS": 1, "BATCH_SIZE": 1}):
            Worker().run()
        self.assertEqual([m.subject for m in django_mail.outbox], ["low", "high"])

    def test_file_storage_alias(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        storages = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "mail": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root}},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=storages, POST_OFFICE={"FILE_STORAGE": "mail"}):
            email = mail.send("a@example.com", message="m", attachments={"x.txt": ContentFile(b"stored apart")})
            attachment = email.attachments.get()
            self.assertTrue(attachment.file.path.startswith(root))
            self.assertEqual(attachment.file.read(), b"stored apart")

    def test_template_engine_alias(self):
        templates = [
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True},
            {
                "NAME": "mail",
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"string_if_invalid": "MISSING", "autoescape": False},
            },
        ]
        with override_settings(TEMPLATES=templates, POST_OFFICE={"TEMPLATE_ENGINE": "mail"}):
            email = mail.send(
                "a@example.com", subject="{{ nope }}", html_message="<i>{{ x }}</i>", context={"x": "<b>"}
            )
        self.assertEqual(email.subject, "MISSING")
        self.assertEqual(email.html_message, "<i><b></i>")

    def test_override_recipients(self):
        email = mail.send(["real@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"], message="m")
        with override_settings(POST_OFFICE={"OVERRIDE_RECIPIENTS": ["qa@example.com"]}):
            message = email.email_message()
        self.assertEqual((message.to, message.cc, message.bcc), (["qa@example.com"], [], []))

    def test_default_priority_now_through_setting(self):
        with override_settings(POST_OFFICE={"DEFAULT_PRIORITY": "now"}):
            with self.captureOnCommitCallbacks(execute=True):
                mail.send("a@example.com", subject="instant", message="m")
        self.assertEqual(Email.objects.get().priority, PRIORITY.now)
        self.assertEqual([m.subject for m in django_mail.outbox], ["instant"])
