"""django-post_office's public surface, part 3: ``settings``, ``validators``, ``fields``, ``lockfile``,
``cache``, ``connections``, ``logutils`` and ``template`` (docs/migrating.rst, "Every name, compared").
"""

from __future__ import annotations

import datetime
import email
import email.policy
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.mail import EmailMultiAlternatives
from django.db import models
from django.template import engines
from django.template.loader import get_template
from django.test import SimpleTestCase, TestCase, override_settings

from post_office import cache, connections, lockfile, logutils, mail, validators
from post_office import settings as po_settings
from post_office.fields import CommaSeparatedEmailField
from post_office.models import EmailTemplate
from post_office.template import render_to_string
from tests.backends import RecordingBackend

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
TEMPLATES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True},
    {
        "BACKEND": "post_office.template.backends.post_office.PostOfficeTemplates",
        "APP_DIRS": True,
        "NAME": "post_office",
    },
]


class SettingsFunctionsTest(SimpleTestCase):
    @override_settings(
        POST_OFFICE={
            "BACKENDS": {"default": LOCMEM, "ses": "tests.backends.RecordingBackend"},
            "BATCH_SIZE": 7,
            "CELERY_ENABLED": True,
            "LOCK_FILE_NAME": "my_lock",
            "THREADS_PER_PROCESS": 3,
            "DEFAULT_PRIORITY": "high",
            "LOG_LEVEL": 1,
            "SENDING_ORDER": ["created"],
            "OVERRIDE_RECIPIENTS": ["qa@example.com"],
            "MAX_RETRIES": 4,
            "RETRY_INTERVAL": datetime.timedelta(minutes=5),
            "MESSAGE_ID_ENABLED": True,
            "MESSAGE_ID_FQDN": "example.com",
            "BATCH_DELIVERY_TIMEOUT": 60,
            "WEBHOOKS": {"SES": {"VERIFY_SIGNATURE": False}},
        }
    )
    def test_each_function_returns_its_setting(self):
        self.assertEqual(po_settings.get_config()["BATCH_SIZE"], 7)
        self.assertEqual(po_settings.get_available_backends()["ses"], "tests.backends.RecordingBackend")
        self.assertEqual(po_settings.get_backend("ses"), "tests.backends.RecordingBackend")
        self.assertEqual(po_settings.get_backend(), LOCMEM)
        with self.assertRaises(KeyError):
            po_settings.get_backend("missing")
        # Django 6.1's test settings also deliver through a MAILERS entry, "smtp".
        mailers = {"smtp"} & set(getattr(settings, "MAILERS", None) or {})
        self.assertEqual(set(po_settings.get_backend_aliases()), {"default", "ses"} | mailers)
        self.assertEqual(po_settings.get_batch_size(), 7)
        self.assertIs(po_settings.get_celery_enabled(), True)
        self.assertEqual(po_settings.get_lock_file_name(), "my_lock")
        self.assertEqual(po_settings.get_threads_per_process(), 3)
        self.assertEqual(po_settings.get_default_priority(), "high")
        self.assertEqual(po_settings.get_default_mailer(), "default")
        with override_settings(POST_OFFICE={**po_settings.get_config(), "DEFAULT_MAILER": "ses"}):
            self.assertEqual(po_settings.get_default_mailer(), "ses")
        self.assertEqual(po_settings.get_log_level(), 1)
        self.assertEqual(po_settings.get_sending_order(), ["created"])
        self.assertEqual(po_settings.get_override_recipients(), ["qa@example.com"])
        self.assertEqual(po_settings.get_max_retries(), 4)
        self.assertEqual(po_settings.get_retry_timedelta(), datetime.timedelta(minutes=5))
        self.assertIs(po_settings.get_message_id_enabled(), True)
        self.assertEqual(po_settings.get_message_id_fqdn(), "example.com")
        self.assertEqual(po_settings.get_batch_delivery_timeout(), 60)
        self.assertEqual(po_settings.get_webhook_config("SES"), {"VERIFY_SIGNATURE": False})
        self.assertEqual(po_settings.get_webhook_config("SPARKPOST"), {})

    @override_settings(POST_OFFICE={})
    def test_defaults(self):
        self.assertEqual(po_settings.get_batch_size(), 100)
        self.assertEqual(po_settings.get_lock_file_name(), "post_office")
        self.assertEqual(po_settings.get_default_priority(), "medium")
        self.assertEqual(po_settings.get_default_mailer(), "default")
        self.assertEqual(po_settings.get_log_level(), 2)
        self.assertEqual(po_settings.get_sending_order(), ["-priority"])
        self.assertIsNone(po_settings.get_override_recipients())
        self.assertEqual(po_settings.get_retry_timedelta(), datetime.timedelta(minutes=15))
        self.assertIs(po_settings.get_message_id_enabled(), False)
        self.assertEqual(po_settings.get_batch_delivery_timeout(), 180)
        self.assertIs(po_settings.get_file_storage(), storages["default"])
        self.assertIs(po_settings.context_field_class, models.JSONField)
        self.assertEqual(po_settings.CONTEXT_FIELD_CLASS, "django.db.models.JSONField")
        self.assertIsInstance(po_settings.PRE_DJANGO_6, bool)
        self.assertIsInstance(po_settings.mailers_are_configured(), bool)

    @override_settings(TEMPLATES=TEMPLATES, POST_OFFICE={"TEMPLATE_ENGINE": "post_office"})
    def test_template_engine_is_the_templates_backend(self):
        self.assertIs(po_settings.get_template_engine(), engines["post_office"])
        rendered = po_settings.get_template_engine().from_string("Hi {{ name }}").render({"name": "Ann"})
        self.assertEqual(rendered, "Hi Ann")


class ValidatorsTest(SimpleTestCase):
    def test_validate_email_with_name(self):
        for value in ("ann@example.com", "Ann <ann@example.com>", '"Doe, John" <john@example.com>'):
            validators.validate_email_with_name(value)
        for value in ("ann", "Ann <ann>", "a@example.com, b@example.com", "Ann\r\n <ann@example.com>"):
            with self.subTest(value), self.assertRaises(ValidationError):
                validators.validate_email_with_name(value)

    def test_validate_comma_separated_emails(self):
        validators.validate_comma_separated_emails(["ann@example.com", "Bob <bob@example.com>"])
        validators.validate_comma_separated_emails(())
        with self.assertRaisesMessage(ValidationError, "Email list must be a list/tuple."):
            validators.validate_comma_separated_emails("ann@example.com")
        with self.assertRaisesMessage(ValidationError, "Invalid email: nope") as raised:
            validators.validate_comma_separated_emails(["ann@example.com", "nope"])
        self.assertEqual(raised.exception.code, "invalid")

    def test_validate_template_syntax(self):
        validators.validate_template_syntax("Hi {{ name }}{% if x %}!{% endif %}")
        with self.assertRaises(ValidationError):
            validators.validate_template_syntax("{% if %}")
        with self.assertRaises(ValidationError):
            validators.validate_template_syntax("{% load no_such_library %}")


class CommaSeparatedEmailFieldTest(SimpleTestCase):
    def field(self) -> CommaSeparatedEmailField:
        field = CommaSeparatedEmailField("To")
        field.set_attributes_from_name("to")
        return field

    def test_text_is_read_as_a_list_and_a_list_stored_as_text(self):
        field = self.field()
        self.assertEqual(
            field.to_python("a@example.com, Bob <b@example.com>"), ["a@example.com", "Bob <b@example.com>"]
        )
        self.assertEqual(field.from_db_value("", None, None), [])
        self.assertEqual(field.get_prep_value(["a@example.com", "b@example.com"]), "a@example.com, b@example.com")
        self.assertEqual(field.get_prep_value("a@example.com"), "a@example.com")
        # A difference (docs/migrating.rst): a display name with a comma survives the round trip.
        stored = field.get_prep_value(['"Doe, John" <j@example.com>', "Doe, Jane <jane@example.com>"])
        self.assertEqual(field.to_python(stored), ['"Doe, John" <j@example.com>', '"Doe, Jane" <jane@example.com>'])

    def test_blank_validators_form_field_and_migrations(self):
        field = self.field()
        self.assertTrue(field.blank)
        field.run_validators(["a@example.com"])
        with self.assertRaises(ValidationError):
            field.run_validators(["nope"])
        self.assertEqual(field.formfield().error_messages["invalid"], "Only comma separated emails are allowed.")
        name, path, args, kwargs = field.deconstruct()
        self.assertEqual(
            (path, kwargs), ("post_office.fields.CommaSeparatedEmailField", {"verbose_name": "To", "blank": True})
        )

    def test_dumpdata_writes_text_that_loads_back(self):
        class Holder:
            to = ["a@example.com", "b@example.com"]

        field = self.field()
        self.assertEqual(field.to_python(field.value_to_string(Holder())), Holder.to)


class LockfileTest(SimpleTestCase):
    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.name = os.path.join(directory, "job")

    def hold_in_another_process(self, seconds: float) -> subprocess.Popen[str]:
        code = (
            "import sys, time; sys.path.insert(0, sys.argv[1]); "
            "import django; from django.conf import settings; settings.configure(); "
            "from post_office.lockfile import FileLock; "
            "lock = FileLock(sys.argv[2]); lock.acquire(); print('held', flush=True); time.sleep(float(sys.argv[3]))"
        )
        root = str(Path(__file__).resolve().parent.parent)
        process = subprocess.Popen(
            [sys.executable, "-c", code, root, self.name, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        self.addCleanup(process.kill)
        self.assertEqual(process.stdout.readline().strip(), "held")
        return process

    def test_a_lock_held_by_another_process_is_refused_then_free_when_it_exits(self):
        process = self.hold_in_another_process(30)
        lock = lockfile.FileLock(self.name)
        self.assertTrue(lock.valid_lock())
        self.assertEqual(lock.get_lock_pid(), process.pid)
        with self.assertRaises(lockfile.FileLocked):
            lock.is_locked()
        with self.assertRaises(lockfile.FileLocked), lockfile.FileLock(self.name):
            pass
        process.kill()  # a killed holder leaves no stale lock
        process.wait()
        with lockfile.FileLock(self.name) as held:
            self.assertTrue(held.valid_lock())
            with self.assertRaises(lockfile.FileLocked), lockfile.FileLock(self.name):
                pass
        self.assertFalse(lockfile.FileLock(self.name).valid_lock())
        self.assertIsNone(lockfile.FileLock(self.name).get_lock_pid())

    def test_timeout_waits_for_the_holder_and_force_goes_ahead(self):
        self.hold_in_another_process(0.5)
        started = time.monotonic()
        with lockfile.FileLock(self.name, timeout=10):
            self.assertGreater(time.monotonic() - started, 0.2)
        self.hold_in_another_process(30)
        self.assertFalse(lockfile.FileLock(self.name, force=True).is_locked())
        with lockfile.FileLock(self.name, force=True):
            pass

    @override_settings(POST_OFFICE={"LOCK_FILE_NAME": "my_job"})
    def test_default_lockfile_is_in_the_temporary_directory(self):
        self.assertEqual(lockfile.default_lockfile, os.path.join(tempfile.gettempdir(), "my_job"))
        self.assertEqual(
            lockfile.FileLock(lockfile.default_lockfile).lock_filename, lockfile.default_lockfile + ".lock"
        )


class CacheTest(TestCase):
    def setUp(self):
        # A cache every process shares (a per-process one is not used for templates).
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        caches = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": directory}}
        overrides = override_settings(CACHES=caches)
        overrides.enable()
        self.addCleanup(overrides.disable)

    def test_set_get_delete(self):
        self.assertIsNotNone(cache.cache_backend)
        cache.set("greeting", "hello")
        self.assertEqual(cache.get("greeting"), "hello")
        self.assertIsNone(cache.get("Greeting!"), "no two names share a key")
        cache.delete("greeting")
        self.assertIsNone(cache.get("greeting"))
        self.assertNotEqual(cache.get_cache_key("welcome email"), cache.get_cache_key("welcome-email"))

    def test_delete_drops_the_cached_template_lookups(self):
        template = EmailTemplate.objects.create(name="welcome", subject="Old")
        self.assertEqual(mail.send("a@example.com", "s@example.com", template="welcome").subject, "Old")  # cached
        # Changed behind the app's back (its own writes invalidate the cache themselves).
        models.QuerySet.update(EmailTemplate.objects.filter(pk=template.pk), subject="New")
        self.assertEqual(mail.send("a@example.com", "s@example.com", template="welcome").subject, "Old")
        cache.delete("welcome")
        self.assertEqual(mail.send("a@example.com", "s@example.com", template="welcome").subject, "New")

    @override_settings(POST_OFFICE_CACHE=False)
    def test_without_a_cache_nothing_is_kept(self):
        self.assertIsNone(cache.cache_backend)
        cache.set("greeting", "hello")
        self.assertIsNone(cache.get("greeting"))
        cache.delete("greeting")


@override_settings(POST_OFFICE={"BACKENDS": {"default": LOCMEM, "recording": "tests.backends.RecordingBackend"}})
class ConnectionsTest(SimpleTestCase):
    def setUp(self):
        RecordingBackend.reset()
        self.addCleanup(connections.connections.close)

    def test_one_open_connection_per_alias_and_thread(self):
        first = connections.connections["recording"]
        self.assertIsInstance(first, RecordingBackend)
        self.assertIs(connections.connections["recording"], first)
        self.assertEqual(RecordingBackend.opened, 1)
        other: list[object] = []
        thread = threading.Thread(target=lambda: other.append(connections.connections["recording"]))
        thread.start()
        thread.join()
        self.assertIsNot(other[0], first)
        first.send_messages([django_mail.EmailMessage("s", "b", "a@example.com", ["b@example.com"])])
        self.assertEqual(len(RecordingBackend.sent), 1)
        self.assertIn(first, connections.connections.all())
        connections.connections.close()
        self.assertEqual(list(connections.connections.all()), [])
        self.assertIsNot(connections.connections["recording"], first)

    def test_an_unknown_alias_is_a_key_error(self):
        with self.assertRaisesMessage(KeyError, "missing is not a valid backend alias"):
            connections.connections["missing"]


class LogutilsTest(SimpleTestCase):
    def test_setup_loghandlers_adds_a_console_handler_only_when_there_is_none(self):
        logger = logging.getLogger("post_office")
        handlers, level = list(logger.handlers), logger.level
        self.addCleanup(setattr, logger, "handlers", handlers)
        self.addCleanup(logger.setLevel, level)
        logger.handlers = []
        self.assertIs(logutils.setup_loghandlers("INFO"), logger)
        [handler] = logger.handlers
        self.assertIsInstance(handler, logging.StreamHandler)
        self.assertEqual(logger.level, logging.INFO)
        logutils.setup_loghandlers("DEBUG")
        self.assertEqual(logger.handlers, [handler])


@override_settings(TEMPLATES=TEMPLATES)
class InlineImageHelpersTest(TestCase):
    """The ``post_office`` template engine, ``render_to_string`` and ``attach_related`` (Inlined Images)."""

    def setUp(self):
        self.static_root = tempfile.mkdtemp()
        os.makedirs(os.path.join(self.static_root, "img"))
        Path(self.static_root, "img", "logo.png").write_bytes(PNG)
        self.templates = tempfile.mkdtemp()
        Path(self.templates, "mail.html").write_text(
            '{% load post_office %}<p>Hi {{ name }}</p><img src="{% inline_image "img/logo.png" %}">'
        )
        self.addCleanup(shutil.rmtree, self.static_root)
        self.addCleanup(shutil.rmtree, self.templates)
        templates = [{**TEMPLATES[0], "DIRS": [self.templates]}, {**TEMPLATES[1], "DIRS": [self.templates]}]
        overrides = override_settings(STATIC_ROOT=self.static_root, TEMPLATES=templates)
        overrides.enable()
        self.addCleanup(overrides.disable)

    def test_render_to_string_returns_the_html_and_the_images(self):
        html, images = render_to_string("mail.html", {"name": "Ann"}, using="post_office")
        [image] = images
        cid = image["Content-ID"].strip("<>")
        self.assertIn(f'src="cid:{cid}"', html)
        self.assertEqual(image.get_content_type(), "image/png")
        self.assertEqual(image.get_payload(decode=True), PNG)
        self.assertTrue(image["Content-Disposition"].startswith("inline"))
        self.assertEqual(
            render_to_string(["missing.html", "mail.html"], {"name": "Bo"}, using="post_office")[0].count("cid:"), 1
        )

    def test_with_another_engine_it_returns_the_text(self):
        rendered = render_to_string("mail.html", {"name": "Ann"}, using="django")
        self.assertIsInstance(rendered, str)
        self.assertIn("<p>Hi Ann</p>", rendered)

    def test_attach_related_sends_the_images_with_the_html(self):
        template = get_template("mail.html", using="post_office")
        html = template.render({"name": "Ann"})
        message = EmailMultiAlternatives("Hello", "Plain text body", "no-reply@example.com", ["john@example.com"])
        message.attach_alternative(html, "text/html")
        template.attach_related(message)
        with override_settings(EMAIL_BACKEND=LOCMEM):
            message.send()
        parsed = email.message_from_bytes(django_mail.outbox[0].message().as_bytes(), policy=email.policy.default)
        [image] = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
        self.assertEqual(image.get_content(), PNG)
        self.assertIn(f"cid:{image['Content-ID'].strip('<>')}", parsed.get_body(("html",)).get_content())
        with self.assertRaises(TypeError):
            template.attach_related(django_mail.EmailMessage("s", "b", "a@example.com", ["b@example.com"]))

    def test_a_template_file_may_use_an_absolute_path_a_database_template_may_not(self):
        absolute = os.path.join(self.static_root, "img", "logo.png")
        Path(self.templates, "absolute.html").write_text(f'<img src="{{% inline_image "{absolute}" %}}">')
        html, [image] = render_to_string("absolute.html", using="post_office")
        self.assertIn(f"cid:{image['Content-ID'].strip('<>')}", html)
        self.assertEqual(image.get_payload(decode=True), PNG)
        # Templates edited in the admin must not reach the server's files (docs/migrating.rst).
        EmailTemplate.objects.create(
            name="abs", subject="s", html_content=f'<img src="{{% inline_image "{absolute}" %}}">'
        )
        with override_settings(POST_OFFICE={"BACKENDS": {"default": LOCMEM}, "TEMPLATE_ENGINE": "post_office"}):
            sent = mail.send("a@example.com", "s@example.com", template="abs")
        self.assertFalse(sent.attachments.exists())
        self.assertNotIn("cid:", sent.html_message)

    def test_the_engine_is_a_template_engine_for_post_office(self):
        EmailTemplate.objects.create(
            name="logo", subject="Logo", html_content='<img src="{% inline_image "img/logo.png" %}">'
        )
        with override_settings(POST_OFFICE={"BACKENDS": {"default": LOCMEM}, "TEMPLATE_ENGINE": "post_office"}):
            sent = mail.send("a@example.com", "s@example.com", template="logo")
        self.assertEqual([a.mimetype for a in sent.attachments.all()], ["image/png"])
