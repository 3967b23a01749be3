"""Settings: Django 6.1's MAILERS, Django 5.2's EMAIL_BACKEND, delivery aliases, and the system checks."""

from __future__ import annotations

import email.message
import os
import sys
import warnings
from typing import Any
from unittest import mock, skipIf, skipUnless

from django.core import checks
from django.core import mail as django_mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.test import TestCase, override_settings

import post_office
from post_office import mail
from post_office.checks import check_settings
from post_office.delivery import Worker
from post_office.exceptions import DeliveryConfigurationError, UnknownBackend
from post_office.models import PRIORITY, STATUS, Email, EmailTemplate
from post_office.transport.connections import backend_factory, check_alias
from tests.helpers import DJANGO_61, LOCMEM, QUEUE, SMTP, delivering_to
from tests.smtp_sink import SMTPSink

if DJANGO_61:
    from django.core.mail import InvalidMailer
    from django.utils.deprecation import RemovedInDjango2028Warning

PACKAGE_DIR = os.path.dirname(os.path.abspath(post_office.__file__)) + os.sep
STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
# A delivery target that sends: a MAILERS alias on 6.1 (tests/settings.py defines "smtp"), a path on 5.2.
SENDS = "smtp" if DJANGO_61 else SMTP


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return sorted(message.id for message in messages if message.id)


def mailers(**extra: Any) -> dict[str, dict[str, Any]]:
    """A MAILERS setting: the queue as default, locmem entries 'smtp' and 'other' to deliver through."""
    return {"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": LOCMEM}, "other": {"BACKEND": LOCMEM}, **extra}


def send_simple(**kwargs: Any) -> Email:
    return mail.send(["to@example.com"], "from@example.com", subject="s", message="m", **kwargs)


# -- Django 6.1: post_office.EmailBackend as a MAILERS entry -------------------------


@skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
class MailersEntryTests(TestCase):
    @override_settings(MAILERS=mailers(queue2={"BACKEND": QUEUE}), POST_OFFICE={"BACKENDS": {"default": "smtp"}})
    def test_alias_is_passed(self):
        connection = django_mail.mailers["queue2"]
        self.assertIsInstance(connection, post_office.EmailBackend)
        self.assertEqual(connection.alias, "queue2")
        self.assertEqual(django_mail.mailers.default.alias, "default")

    @override_settings(
        MAILERS=mailers(default={"BACKEND": QUEUE, "OPTIONS": {"priority": "high", "backend": "bulk"}}),
        POST_OFFICE={"BACKENDS": {"default": "smtp", "bulk": "other"}},
    )
    def test_options_priority_and_backend_are_honoured(self):
        self.assertEqual(django_mail.send_mail("s", "m", "f@example.com", ["t@example.com"]), 1)
        email = Email.objects.get()
        self.assertEqual(email.priority, PRIORITY.high)
        self.assertEqual(email.backend_alias, "bulk")
        self.assertEqual(Worker().run().sent, 1)
        [sent] = django_mail.outbox
        self.assertEqual(sent.sent_using, "other")

    @override_settings(
        MAILERS=mailers(urgent={"BACKEND": QUEUE, "OPTIONS": {"priority": "now"}}),
        POST_OFFICE={"BACKENDS": {"default": "smtp"}},
    )
    def test_send_using_a_queueing_entry_with_priority_now(self):
        message = EmailMessage("urgent", "m", "f@example.com", ["t@example.com"])
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(message.send(using="urgent"), 1)
        email = Email.objects.get()
        self.assertEqual(email.priority, PRIORITY.now)
        self.assertEqual(email.status, STATUS.sent)
        [sent] = django_mail.outbox
        self.assertEqual(sent.sent_using, "smtp")

    @override_settings(
        MAILERS=mailers(default={"BACKEND": QUEUE, "OPTIONS": {"priority": "high", "bogus": 1}}),
        POST_OFFICE={"BACKENDS": {"default": "smtp"}},
    )
    def test_unknown_options_raise_invalid_mailer(self):
        with self.assertRaisesMessage(InvalidMailer, "'bogus'"):
            django_mail.mailers["default"]
        with self.assertRaises(InvalidMailer):
            django_mail.send_mail("s", "m", "f@example.com", ["t@example.com"])
        self.assertEqual(Email.objects.count(), 0)

    @override_settings(
        MAILERS=mailers(default={"BACKEND": QUEUE, "OPTIONS": {"priority": "urgent"}}),
        POST_OFFICE={"BACKENDS": {"default": "smtp"}},
    )
    def test_invalid_priority_option_raises_invalid_mailer(self):
        with self.assertRaisesMessage(InvalidMailer, "MAILERS['default']"):
            django_mail.mailers["default"]

    @override_settings(
        MAILERS=mailers(default={"BACKEND": QUEUE, "OPTIONS": {"backend": "nowhere"}}),
        POST_OFFICE={"BACKENDS": {"default": "smtp"}},
    )
    def test_unknown_backend_option_raises_invalid_mailer(self):
        with self.assertRaisesMessage(InvalidMailer, "nowhere"):
            django_mail.mailers["default"]

    @override_settings(MAILERS=mailers(), POST_OFFICE={"BACKENDS": {"default": "smtp"}})
    def test_fail_silently_is_not_a_deprecated_argument(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            connection = post_office.EmailBackend(fail_silently=True, alias="default")
        self.assertTrue(connection.fail_silently)
        self.assertEqual([str(w.message) for w in caught], [])


@skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
@override_settings(MAILERS=mailers(), POST_OFFICE={"BACKENDS": {"default": "smtp", "bulk": "other"}})
class MailersDeliveryAliasTests(TestCase):
    def test_backends_alias_naming_a_mailers_entry(self):
        send_simple(backend="bulk")
        send_simple()
        Worker().run()
        self.assertEqual(sorted(m.sent_using for m in django_mail.outbox), ["other", "smtp"])

    def test_mailers_alias_used_directly(self):
        email = send_simple(backend="other")
        self.assertEqual(email.backend_alias, "other")
        Worker().run()
        [sent] = django_mail.outbox
        self.assertEqual(sent.sent_using, "other")

    def test_queueing_entry_is_not_a_delivery_alias(self):
        with override_settings(MAILERS=mailers(queue2={"BACKEND": QUEUE})):
            with self.assertRaises(UnknownBackend):
                send_simple(backend="queue2")
            with self.assertRaises(DeliveryConfigurationError):
                backend_factory("queue2")
        with self.assertRaises(UnknownBackend):
            send_simple(backend="missing")
        self.assertEqual(Email.objects.count(), 0)

    def test_default_alias_resolves_through_backends(self):
        connection = backend_factory("default")()
        self.assertIsInstance(connection, LocmemBackend)
        self.assertEqual(connection.alias, "smtp")
        self.assertEqual(backend_factory("bulk")().alias, "other")

    def test_two_smtp_servers(self):
        with SMTPSink() as first, SMTPSink() as second:
            entries = {
                "default": {"BACKEND": QUEUE},
                "smtp": {"BACKEND": SMTP, "OPTIONS": first.backend_options()},
                "other": {"BACKEND": SMTP, "OPTIONS": second.backend_options()},
            }
            with override_settings(MAILERS=entries):
                mail.send(["a@example.com"], "f@example.com", subject="to first", message="m")
                mail.send(["b@example.com"], "f@example.com", subject="to second", message="m", backend="bulk")
                mail.send(["c@example.com"], "f@example.com", subject="also second", message="m", backend="other")
                self.assertEqual(Worker().run().sent, 3)
        self.assertEqual([m.message["Subject"] for m in first.messages], ["to first"])
        self.assertEqual(sorted(m.message["Subject"] for m in second.messages), ["also second", "to second"])
        self.assertEqual(first.messages[0].rcpt_tos, ["a@example.com"])

    @override_settings(MAILERS={"default": {"BACKEND": LOCMEM}}, POST_OFFICE={})
    def test_default_mailer_that_sends_is_the_default_delivery_backend(self):
        # The project keeps Django's default mailer and queues through mail.send().
        send_simple()
        Worker().run()
        [sent] = django_mail.outbox
        self.assertEqual(sent.sent_using, "default")

    @override_settings(MAILERS={"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": LOCMEM}}, POST_OFFICE={})
    def test_queueing_default_without_backends_cannot_deliver(self):
        with self.assertRaises(DeliveryConfigurationError):
            backend_factory("default")


@skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
class NoDeprecationWarningsTests(TestCase):
    """Running the whole flow under 6.1 with MAILERS raises none of its deprecation warnings from our code."""

    @override_settings(ROOT_URLCONF="tests.test_backend")
    def test_enqueue_and_deliver_flow(self):
        from django.contrib.auth.forms import PasswordResetForm
        from django.contrib.auth.models import User

        User.objects.create_user("carol", "carol@example.com", "secret")
        EmailTemplate.objects.create(
            name="welcome", subject="Hi {{ name }}", content="Hello {{ name }}", html_content="<b>{{ name }}</b>"
        )
        part = email.message.MIMEPart()
        part.set_content(
            b"\x89PNG fake", maintype="image", subtype="png", disposition="inline", filename="logo.png", cid="<logo@x>"
        )

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with SMTPSink() as sink, delivering_to(sink, MESSAGE_ID_ENABLED=True):
                with self.captureOnCommitCallbacks(execute=True):
                    # Django's mail APIs, queued by the MAILERS default entry.
                    django_mail.send_mail("a", "b", "f@example.com", ["t@example.com"], html_message="<p>b</p>")
                    message = EmailMultiAlternatives(
                        "rich",
                        "body",
                        "f@example.com",
                        ["t@example.com"],
                        cc=["c@example.com"],
                        bcc=["h@example.com"],
                        reply_to=["r@example.com"],
                        headers={"X-Tag": "1"},
                    )
                    message.attach_alternative("<p>body</p>", "text/html")
                    message.attach("a.txt", "text attachment", "text/plain")
                    message.attach("b.bin", b"\x00\x01", "application/octet-stream")
                    message.attach(part)
                    message.send()
                    django_mail.send_mass_mail([("m1", "b", "f@example.com", ["m1@example.com"])])
                    django_mail.mail_admins("admins", "body")
                    django_mail.mail_managers("managers", "body")
                    form = PasswordResetForm({"email": "carol@example.com"})
                    self.assertTrue(form.is_valid())
                    form.save(domain_override="example.com")
                    # post_office's own API and helpers.
                    mail.send(["t@example.com"], "f@example.com", template="welcome", context={"name": "Al"})
                    mail.send(
                        ["t@example.com"],
                        "f@example.com",
                        template="welcome",
                        context={"name": "Bo"},
                        render_on_delivery=True,
                    )
                    mail.send(["t@example.com"], "f@example.com", subject="now", message="m", priority="now")
                    mail.send_many(
                        [
                            {
                                "recipients": ["t@example.com"],
                                "sender": "f@example.com",
                                "subject": "many",
                                "message": "m",
                            }
                        ]
                    )
                    mail.send(
                        ["t@example.com"],
                        "f@example.com",
                        subject="att",
                        message="m",
                        attachments={
                            "c.txt": b"content",
                            "logo.png": {
                                "file": b"\x89PNG",
                                "mimetype": "image/png",
                                "headers": {"Content-ID": "<l@x>"},
                            },
                        },
                    )
                    mail.send_mail("h", "m", "f@example.com", ["t@example.com"], priority="high")
                    mail.mail_admins("h", "m")
                    mail.mail_managers("h", "m")
                    mail.send_mass_mail([("h", "m", "f@example.com", ["t@example.com"])])
                    mail.send_html_mail("h", "m", "<b>m</b>", "f@example.com", ["t@example.com"])
                queued = Email.objects.filter(status=STATUS.queued).count()
                stats = Worker().run()
                self.assertEqual((stats.sent, stats.failed, stats.requeued), (queued, 0, 0))
                extra = send_simple()
                extra.email_message().message()
                extra.dispatch()
                self.assertEqual(ids(check_settings()), [])
            self.assertEqual(len(sink.messages), queued + 2)

        ours = [w for w in caught if os.path.abspath(w.filename).startswith(PACKAGE_DIR)]
        self.assertEqual([f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in ours], [])
        # The test itself uses no deprecated API, so no Django deprecation may show up at all.
        deprecations = [w for w in caught if issubclass(w.category, RemovedInDjango2028Warning)]
        self.assertEqual([f"{w.filename}:{w.lineno}: {w.message}" for w in deprecations], [])


# -- Django 5.2: EMAIL_BACKEND --------------------------------------------------


@skipIf(DJANGO_61, "EMAIL_BACKEND is deprecated in Django 6.1 in favour of MAILERS")
class EmailBackendSettingTests(TestCase):
    @override_settings(EMAIL_BACKEND=QUEUE, POST_OFFICE={})
    def test_queueing_backend_delivers_via_django_smtp_by_default(self):
        # Django's SMTP backend, through post_office.smtp's subclass of it.
        self.assertTrue(issubclass(backend_factory("default"), DjangoSMTPBackend))
        self.assertIs(backend_factory(""), backend_factory("default"))
        self.assertEqual(ids(check_settings()), [])

    def test_queueing_backend_without_backends_delivers_over_smtp(self):
        with SMTPSink() as sink:
            options = sink.backend_options()
            with override_settings(
                EMAIL_BACKEND=QUEUE,
                EMAIL_HOST=options["host"],
                EMAIL_PORT=options["port"],
                EMAIL_TIMEOUT=10,
                POST_OFFICE={},
            ):
                self.assertEqual(django_mail.send_mail("s", "over smtp", "f@example.com", ["t@example.com"]), 1)
                self.assertEqual(sink.messages, [])
                self.assertEqual(Worker().run().sent, 1)
        [received] = sink.messages
        self.assertEqual(received.rcpt_tos, ["t@example.com"])
        self.assertEqual(received.message.get_content().rstrip("\r\n"), "over smtp")

    @override_settings(EMAIL_BACKEND=LOCMEM, POST_OFFICE={})
    def test_other_email_backend_is_the_default_delivery_backend(self):
        self.assertIs(backend_factory("default"), LocmemBackend)
        send_simple()
        self.assertEqual(Worker().run().sent, 1)
        self.assertEqual(len(django_mail.outbox), 1)

    @override_settings(EMAIL_BACKEND=QUEUE, POST_OFFICE={"BACKENDS": {"default": SMTP, "bulk": LOCMEM}})
    def test_named_delivery_backends(self):
        self.assertIs(backend_factory("bulk"), LocmemBackend)
        self.assertEqual(check_alias("bulk"), "bulk")
        with self.assertRaises(UnknownBackend):
            check_alias("other")
        connection = post_office.EmailBackend(backend="bulk", priority="low")
        self.assertEqual(connection.send_messages([EmailMessage("s", "m", "f@example.com", ["t@example.com"])]), 1)
        email = Email.objects.get()
        self.assertEqual((email.backend_alias, email.priority), ("bulk", PRIORITY.low))
        Worker().run()
        self.assertEqual(len(django_mail.outbox), 1)

    @override_settings(EMAIL_BACKEND=QUEUE, POST_OFFICE={"BACKENDS": {"default": "post_office.EmailBackend"}})
    def test_queueing_backend_as_its_own_delivery_backend_is_refused(self):
        with self.assertRaises(DeliveryConfigurationError):
            backend_factory("default")


# -- System checks ---------------------------------------------------------------


class CheckTests(TestCase):
    def test_test_settings_are_clean(self):
        self.assertEqual(ids(check_settings()), [])

    def test_registered_with_django(self):
        with override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "BATCHSIZE": 5}):
            self.assertIn("post_office.W001", ids(checks.run_checks(tags=["post_office"])))

    @override_settings(POST_OFFICE="not a dict")
    def test_post_office_not_a_dict(self):
        self.assertEqual(ids(check_settings()), ["post_office.E001"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "BATCHSIZE": 5})
    def test_unknown_key_warns(self):
        [message] = check_settings()
        self.assertEqual(message.id, "post_office.W001")
        self.assertIn("BATCHSIZE", message.msg)
        self.assertIsInstance(message, checks.Warning)

    def test_queueing_backend_as_its_own_delivery_backend(self):
        for path in ("post_office.EmailBackend", "post_office.backends.EmailBackend"):
            with self.subTest(path), override_settings(POST_OFFICE={"BACKENDS": {"default": path}}):
                self.assertEqual(ids(check_settings()), ["post_office.E002"])

    @skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
    @override_settings(MAILERS=mailers(queue2={"BACKEND": QUEUE}), POST_OFFICE={"BACKENDS": {"default": "queue2"}})
    def test_backends_naming_a_queueing_mailers_entry(self):
        self.assertEqual(ids(check_settings()), ["post_office.E002"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS, "bulk": "no.such.Backend"}})
    def test_backend_that_cannot_be_imported(self):
        [message] = check_settings()
        self.assertEqual(message.id, "post_office.E003")
        self.assertIn("'bulk'", message.msg)

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS, "bulk": None}})
    def test_backend_that_is_not_a_string(self):
        self.assertEqual(ids(check_settings()), ["post_office.E003"])

    @skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
    @override_settings(MAILERS={"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": LOCMEM}}, POST_OFFICE={})
    def test_mailers_default_is_queue_without_backends_default(self):
        self.assertEqual(ids(check_settings()), ["post_office.E004"])

    @skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
    @override_settings(MAILERS={"default": {"BACKEND": LOCMEM}}, POST_OFFICE={})
    def test_mailers_default_that_sends_needs_no_backends(self):
        self.assertEqual(ids(check_settings()), [])

    @skipIf(DJANGO_61, "EMAIL_BACKEND is deprecated in Django 6.1")
    @override_settings(EMAIL_BACKEND=QUEUE, POST_OFFICE={})
    def test_email_backend_queue_without_backends_is_fine(self):
        self.assertEqual(ids(check_settings()), [])

    @skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
    @override_settings(POST_OFFICE={"BACKENDS": {"default": "smtp", "bulk": SMTP, "mem": LOCMEM}})
    def test_backend_path_with_mailers_warns(self):
        messages = check_settings()
        self.assertEqual(ids(messages), ["post_office.W002", "post_office.W002"])
        self.assertIn("'bulk'", messages[0].msg)
        self.assertIn("MAILERS entry", messages[0].hint)

    @skipUnless(DJANGO_61, "MAILERS needs Django 6.1")
    @override_settings(POST_OFFICE={"BACKENDS": {"default": SMTP}})
    def test_backend_path_with_mailers_cannot_deliver_over_smtp(self):
        # Why W002 exists: Django's SMTP backend outside MAILERS reads EMAIL_* settings,
        # which MAILERS forbids, so every delivery fails.
        self.assertEqual(ids(check_settings()), ["post_office.W002"])
        send_simple()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RemovedInDjango2028Warning)
            stats = Worker().run()
        # Not sent, and not the email's fault: it stays queued, no attempt counted, until the configuration is fixed.
        self.assertEqual((stats.sent, stats.requeued, stats.failed, stats.held), (0, 0, 0, 1))
        self.assertIn("EMAIL_HOST", stats.blocked["default"])
        self.assertEqual(Email.objects.get().status, STATUS.queued)

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "DEFAULT_PRIORITY": "urgent"})
    def test_bad_default_priority(self):
        self.assertEqual(ids(check_settings()), ["post_office.E005"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "FILE_STORAGE": "attachments"}, STORAGES=STORAGES)
    def test_bad_file_storage(self):
        [message] = check_settings()
        self.assertEqual(message.id, "post_office.E006")
        self.assertIn("'attachments'", message.msg)

    @override_settings(
        POST_OFFICE={"BACKENDS": {"default": SENDS}, "FILE_STORAGE": "attachments"},
        STORAGES={**STORAGES, "attachments": {"BACKEND": "django.core.files.storage.InMemoryStorage"}},
    )
    def test_file_storage_alias_that_exists(self):
        self.assertEqual(ids(check_settings()), [])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "TEMPLATE_ENGINE": "missing"})
    def test_bad_template_engine(self):
        self.assertEqual(ids(check_settings()), ["post_office.E007"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "CELERY_ENABLED": True})
    def test_celery_enabled_without_celery(self):
        with mock.patch.dict(sys.modules, {"celery": None}):
            self.assertEqual(ids(check_settings()), ["post_office.E008"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": SENDS}, "LOG_LEVEL": 5})
    def test_bad_log_level(self):
        self.assertEqual(ids(check_settings()), ["post_office.E009"])

    @override_settings(POST_OFFICE={"BACKENDS": {"default": "post_office.EmailBackend"}, "SPEED": 1, "LOG_LEVEL": 7})
    def test_several_problems_reported_together(self):
        self.assertEqual(ids(check_settings()), ["post_office.E002", "post_office.E009", "post_office.W001"])
