"""File templates in django-templated-mail's block format, its messages through the queue, and queue options.

The template files are in tests/templates/email/.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import pickle
import shutil
import tempfile
import threading
from email.utils import getaddresses
from typing import Any
from unittest import mock

from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import EmailMessage
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.test import RequestFactory, TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from templated_mail.mail import BaseEmailMessage

import post_office
from post_office import mail
from post_office.delivery import Worker
from post_office.exceptions import (
    InvalidArgument,
    InvalidContext,
    InvalidEmail,
    InvalidPriority,
    InvalidSchedule,
    MissingVariables,
    TemplateConflict,
    TemplateSyntaxInvalid,
    UnknownBackend,
    UnknownTemplate,
)
from post_office.models import PRIORITY, STATUS, Email, EmailTemplate
from post_office.templated import (
    TemplatedEmailMessage,
    file_template_candidates,
    is_file_template,
    render_file_template,
    template_context,
)
from tests.helpers import DJANGO_61, LOCMEM, delivering_to, queueing
from tests.smtp_sink import SMTPSink
from tests.test_backend import leaves, structure

WELCOME = "file:email/welcome.html"
BACKENDS = {"default": "smtp", "bulk": "smtp"} if DJANGO_61 else {"default": LOCMEM, "bulk": LOCMEM}
LATER = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
MUCH_LATER = datetime.datetime(2030, 2, 1, 12, 0, tzinfo=datetime.timezone.utc)


def sending_directly() -> override_settings:
    """Django's mail APIs send at once to locmem (``mail.outbox``), without the queue."""
    if DJANGO_61:
        return override_settings(MAILERS={"default": {"BACKEND": LOCMEM}})
    return override_settings(EMAIL_BACKEND=LOCMEM)


def parsed(message: EmailMessage) -> Any:
    """A Django message as the receiving side parses it."""
    return email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)


# -- file templates with mail.send -----------------------------------------------


@queueing()
class FileTemplateTests(TestCase):
    def test_naming_rule(self):
        self.assertTrue(is_file_template("file:email/welcome.html"))
        self.assertFalse(is_file_template("welcome"))
        self.assertFalse(is_file_template("email/welcome.html"))
        self.assertFalse(is_file_template(EmailTemplate(name="x")))

    @override_settings(DOMAIN="example.org", SITE_NAME="Example")
    def test_send_renders_the_blocks_with_templated_mail_conventions(self):
        email_obj = mail.send(
            ["to@example.com"], "from@example.com", template=WELCOME, context={"name": "Ann", "user_email": "a@x.org"}
        )
        email_obj.refresh_from_db()
        self.assertEqual(email_obj.subject, "Welcome to Example, Ann & co")
        self.assertEqual(email_obj.message, "Hello Ann <a@x.org>,\nvisit http://example.org/start")
        self.assertEqual(
            email_obj.html_message,
            '<p>Hello Ann &lt;a@x.org&gt;, visit <a href="http://example.org/start">Example</a></p>',
        )
        self.assertIsNone(email_obj.template)
        self.assertIsNone(email_obj.context)

    @override_settings(DOMAIN="example.org", SITE_NAME="Example")
    def test_context_values_win_over_conventions(self):
        context = template_context({"domain": "other.org", "protocol": "https", "site_name": "Other", "user": "bob"})
        self.assertEqual(
            {k: context[k] for k in ("domain", "protocol", "site_name", "user")},
            {"domain": "other.org", "protocol": "https", "site_name": "Other", "user": "bob"},
        )
        defaults = template_context({})
        self.assertEqual(
            {k: defaults[k] for k in ("domain", "protocol", "site_name", "user")},
            {"domain": "example.org", "protocol": "http", "site_name": "Example", "user": None},
        )
        self.assertNotIn("view", defaults)

    def test_subject_is_one_line_and_text_parts_are_not_escaped(self):
        rendered = render_file_template(WELCOME, {"name": "<Tom & Jerry>", "user_email": "t@x.org"})
        self.assertEqual(rendered.subject, "Welcome to , <Tom & Jerry> & co")
        self.assertIn("Hello <Tom & Jerry> <t@x.org>", rendered.message)
        self.assertIn("Hello &lt;Tom &amp; Jerry&gt;", rendered.html_message)

    def test_language_chain_picks_the_most_specific_file(self):
        self.assertEqual(
            file_template_candidates(WELCOME, "pt-br"),
            [("email/welcome.pt-br.html", "pt-br"), ("email/welcome.pt.html", "pt"), ("email/welcome.html", "")],
        )
        self.assertEqual(file_template_candidates("email/welcome.html"), [("email/welcome.html", "")])
        self.assertEqual(render_file_template(WELCOME, {}, "pt_BR").language, "pt")
        subjects = {
            language: render_file_template(WELCOME, {"name": "Ann"}, language).subject
            for language in ("", "de", "pt-br", "fr")
        }
        self.assertEqual(
            subjects,
            {
                "": "Welcome to , Ann & co",
                "de": "Willkommen, Ann",
                "pt-br": "Bem-vindo, Ann",
                "fr": "Welcome to , Ann & co",
            },
        )
        email_obj = mail.send(["to@example.com"], template=WELCOME, context={"name": "Ana"}, language="pt-br")
        # The fallback taken is recorded, as for database templates.
        self.assertEqual(
            (email_obj.subject, email_obj.language, email_obj.template_language), ("Bem-vindo, Ana", "pt-br", "pt")
        )

    @override_settings(POST_OFFICE={"BACKENDS": BACKENDS, "LANGUAGE_FALLBACKS": {"fr": ["de"]}})
    def test_language_fallbacks_setting_applies_to_files(self):
        self.assertEqual(render_file_template(WELCOME, {"name": "Ann"}, "fr").subject, "Willkommen, Ann")
        with self.settings(POST_OFFICE={"BACKENDS": BACKENDS, "LANGUAGE_FALLBACKS": False}):
            self.assertEqual(file_template_candidates(WELCOME, "fr"), [("email/welcome.fr.html", "fr")])
            with self.assertRaises(UnknownTemplate):
                render_file_template(WELCOME, {"name": "Ann"}, "fr")

    def test_renders_in_the_emails_language_not_the_active_one(self):
        context = {"when": datetime.date(2025, 1, 5), "yes": True}
        with translation.override("fr"):
            email_obj = mail.send(
                ["to@example.com"], template="file:email/translated.html", context=context, language="de"
            )
            self.assertEqual(translation.get_language(), "fr")
        self.assertEqual(email_obj.subject, "[de] Januar")
        self.assertEqual(email_obj.message, "Ja Januar")

    def test_preview_of_a_file_template(self):
        preview = post_office.render_preview(
            "file:email/with_logo.html", {"logo": ContentFile(PNG, name="logo.png")}, "pt-br"
        )
        self.assertEqual(
            (preview.subject, preview.message, preview.template_language), ("Our logo", "See our logo", "")
        )
        [image] = preview.inline_images
        self.assertIn(f"cid:{image.cid}", preview.html_message)
        self.assertEqual(post_office.render_preview(WELCOME, {"name": "Ana"}, "pt-br").template_language, "pt")
        self.assertEqual(Email.objects.count(), 0)

    def test_send_many_mixes_file_and_database_templates(self):
        EmailTemplate.objects.create(name="db", subject="DB {{ name }}", content="db body")
        emails = mail.send_many(
            [
                {"recipients": ["a@example.com"], "template": WELCOME, "context": {"name": "A"}, "language": "de"},
                {"recipients": ["b@example.com"], "template": "db", "context": {"name": "B"}},
                {"recipients": ["c@example.com"], "template": "file:email/html_only.html", "context": {"what": "<b>"}},
            ]
        )
        self.assertEqual([e.subject for e in emails], ["Willkommen, A", "DB B", "HTML only"])
        self.assertEqual(emails[2].html_message, "<p>Only &lt;b&gt;</p>")
        self.assertEqual(emails[2].message, "Only <b>")  # made from the HTML (AUTO_PLAIN_TEXT)
        self.assertEqual(Email.objects.count(), 3)

    def test_file_templates_never_query_database_templates(self):
        with CaptureQueriesContext(connection) as queries:
            mail.send(["to@example.com"], template=WELCOME, context={"name": "A"})
            mail.send_many([{"recipients": ["b@example.com"], "template": WELCOME, "language": "de"}] * 3)
        self.assertFalse([q["sql"] for q in queries.captured_queries if "emailtemplate" in q["sql"].lower()])
        self.assertEqual(Email.objects.count(), 4)

    def test_send_many_names_the_bad_item(self):
        with self.assertRaises(UnknownTemplate) as caught:
            mail.send_many(
                [
                    {"recipients": ["a@example.com"], "template": WELCOME},
                    {"recipients": ["b@example.com"], "template": "file:email/missing.html"},
                ]
            )
        self.assertEqual(caught.exception.field, "kwargs_list[1].template")
        self.assertEqual(Email.objects.count(), 0)

    def test_extends_with_block_super_and_nested_blocks(self):
        rendered = render_file_template(
            "file:email/grandchild.html", {"name": "Ann", "topic": "Cats", "site_name": "S"}
        )
        self.assertEqual(rendered.subject, "[S] News: Cats")
        self.assertEqual(rendered.message, "Hi Ann, dear reader\nToday: Cats (and more)\n-- The S team")
        self.assertEqual(
            rendered.html_message, "<html><body><p>Hi Ann,</p><p>Today: Cats</p><footer>The team</footer></body></html>"
        )

    def test_templated_mail_1_1_1_loses_blocks_under_extends(self):
        # The bug our renderer fixes: 1.1.1 only looks at the top level of the file.
        theirs = BaseEmailMessage(context={"name": "Ann", "topic": "Cats"}, template_name="email/child.html")
        theirs.render()
        self.assertEqual((theirs.subject, theirs.body, theirs.alternatives), ("", "", []))
        ours = render_file_template("file:email/child.html", {"name": "Ann", "topic": "Cats", "site_name": "S"})
        self.assertEqual(ours.subject, "[S] News: Cats")
        self.assertEqual(ours.message, "Hi Ann,\nToday: Cats\n-- The S team")

    def test_errors_name_the_problem(self):
        cases = [
            (
                "file:email/missing.html",
                UnknownTemplate,
                "was not found by the template loaders (tried 'email/missing.html')",
            ),
            ("file:email/broken.html", TemplateSyntaxInvalid, "email/broken.html, line 3:"),
            ("file:email/no_subject.html", TemplateSyntaxInvalid, "has no {% block subject %}"),
            ("file:email/page.html", TemplateSyntaxInvalid, "{% block text_body %} or {% block html_body %}"),
            ("file:email/extends_missing.html", UnknownTemplate, 'extends "email/does_not_exist.html"'),
            ("file:", InvalidArgument, "names no file"),
        ]
        for name, error, text in cases:
            with self.subTest(name), self.assertRaises(error) as caught:
                mail.send(["to@example.com"], template=name)
            self.assertIn(text, str(caught.exception))
        with self.assertRaises(InvalidArgument) as caught:
            render_file_template(WELCOME, {}, "es-mx")  # no supported base ('de-at' would stand for 'de')
        self.assertEqual(caught.exception.field, "language")
        with self.assertRaises(InvalidArgument):
            render_file_template(WELCOME, ["not", "a", "dict"])  # type: ignore[arg-type]
        self.assertEqual(Email.objects.count(), 0)

    def test_unknown_language_is_refused(self):
        with self.assertRaises(InvalidArgument) as caught:
            mail.send(["to@example.com"], template=WELCOME, language="xx")
        self.assertEqual(caught.exception.field, "language")

    @override_settings(POST_OFFICE={"STRICT_TEMPLATE_VARIABLES": True})
    def test_strict_mode_names_the_missing_variables(self):
        # welcome.html uses name and user_email; domain, protocol and site_name come from the conventions.
        with self.assertRaises(MissingVariables) as caught:
            mail.send(["a@example.com"], "from@example.com", template="file:email/welcome.html", context={})
        self.assertEqual(caught.exception.value, ["name", "user_email"])
        self.assertIn("used by email/welcome.html but missing from the context", str(caught.exception))
        self.assertEqual(Email.objects.count(), 0)
        context = {"name": "Ann", "user_email": "ann@example.com"}
        sent = mail.send(["a@example.com"], "from@example.com", template="file:email/welcome.html", context=context)
        self.assertIn("Hello Ann", sent.message)

    def test_subject_with_template_is_a_conflict(self):
        with self.assertRaises(TemplateConflict):
            mail.send(["to@example.com"], template=WELCOME, subject="Hi")

    def test_render_on_delivery_renders_the_file_when_sent(self):
        email_obj = mail.send(
            ["to@example.com"], "from@example.com", template=WELCOME, context={"name": "Ann"}, render_on_delivery=True
        )
        stored = Email.objects.get(pk=email_obj.pk)
        self.assertEqual((stored.template_file, stored.context, stored.subject), (WELCOME, {"name": "Ann"}, ""))
        self.assertIsNone(stored.template)
        with translation.override("de"):  # the stored language (none: the base file) decides, not the active one
            self.assertEqual(Worker().run().sent, 1)
        [sent] = django_mail.outbox
        self.assertIn("Welcome to", sent.subject)
        self.assertIn("Hello Ann", sent.body)

    def test_render_on_delivery_uses_the_language_chain_at_delivery(self):
        email_obj = mail.send(
            ["to@example.com"], template=WELCOME, context={"name": "Ann"}, language="de", render_on_delivery=True
        )
        self.assertEqual(Email.objects.get(pk=email_obj.pk).template_language, "de")
        self.assertEqual(Worker().run().sent, 1)
        self.assertEqual(django_mail.outbox[0].subject, "Willkommen, Ann")

    def test_render_on_delivery_checks_the_file_when_queued(self):
        with self.assertRaises(UnknownTemplate) as caught:
            mail.send(["to@example.com"], template="file:email/missing.html", render_on_delivery=True)
        self.assertIn("email/missing.html", str(caught.exception))
        with self.assertRaises(TemplateSyntaxInvalid):
            mail.send(["to@example.com"], template="file:email/broken.html", render_on_delivery=True)
        with self.assertRaises(InvalidContext):  # the context is stored as JSON
            mail.send(["to@example.com"], template=WELCOME, context={"when": object()}, render_on_delivery=True)
        self.assertEqual(Email.objects.count(), 0)

    def test_a_file_that_breaks_before_delivery_fails_for_good(self):
        email_obj = mail.send(["to@example.com"], template=WELCOME, context={"name": "A"}, render_on_delivery=True)
        Email.objects.filter(pk=email_obj.pk).update(template_file="file:email/gone.html")
        with self.settings(POST_OFFICE={**django_settings.POST_OFFICE, "MAX_RETRIES": 3, "LOG_LEVEL": 1}):
            stats = Worker().run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 1, 0))
        stored = Email.objects.get(pk=email_obj.pk)
        self.assertEqual((stored.status, stored.number_of_retries), (STATUS.failed, 0))
        self.assertEqual(list(stored.logs.values_list("exception_type", flat=True)), ["UnknownTemplate"])

    def test_render_on_delivery_inline_image_arrives_as_a_related_part(self):
        media = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, media)
        with override_settings(MEDIA_ROOT=media):
            default_storage.save("mail/logo.png", ContentFile(PNG))
            with SMTPSink() as sink, delivering_to(sink):
                mail.send(
                    ["to@example.com"],
                    template="file:email/with_logo.html",
                    context={"logo": "mail/logo.png"},
                    render_on_delivery=True,
                )
                self.assertEqual(Worker().run().sent, 1)
        [received] = sink.messages
        self.assertEqual(
            structure(received.message),
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
        )
        image = [part for part in received.message.walk() if part.get_content_type() == "image/png"][0]
        html = [part for part in received.message.walk() if part.get_content_type() == "text/html"][0]
        self.assertIn(f'src="cid:{image["Content-ID"].strip("<>")}"', html.get_content())
        self.assertEqual(image.get_payload(decode=True), PNG)

    def test_database_template_names_cannot_start_with_file(self):
        for save in (
            lambda: EmailTemplate.objects.create(name="file:email/welcome.html", subject="x"),
            lambda: EmailTemplate(name="file:x").full_clean(),
            lambda: EmailTemplate.objects.bulk_create([EmailTemplate(name="file:y")]),
        ):
            with self.assertRaises(ValidationError) as caught:
                save()
            self.assertIn("name", caught.exception.message_dict)
            self.assertIn("marks file templates", caught.exception.message_dict["name"][0])
        self.assertEqual(EmailTemplate.objects.count(), 0)

    def test_inline_images_arrive_as_related_parts(self):
        with SMTPSink() as sink, delivering_to(sink):
            email_obj = mail.send(
                ["to@example.com"],
                template="file:email/with_logo.html",
                context={"logo": ContentFile(PNG, name="logo.png")},
            )
            self.assertEqual(Worker().run().sent, 1)
        [attachment] = email_obj.attachments.all()
        cid = attachment.headers["Content-ID"].strip("<>")
        self.assertIn(f'src="cid:{cid}"', email_obj.html_message)
        [received] = sink.messages
        self.assertEqual(
            structure(received.message),
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
        )
        image = [part for part in received.message.walk() if part.get_content_type() == "image/png"][0]
        self.assertEqual(image["Content-ID"], f"<{cid}>")
        self.assertEqual(image.get_payload(decode=True), PNG)

    def test_queued_file_template_is_delivered(self):
        mail.send(["to@example.com"], "from@example.com", template=WELCOME, context={"name": "Ann"}, language="de")
        self.assertEqual(Worker().run().sent, 1)
        [sent] = django_mail.outbox
        self.assertEqual(sent.subject, "Willkommen, Ann")
        self.assertEqual(sent.body, "Hallo Ann")
        self.assertEqual(sent.alternatives[0][0], "<p>Hallo Ann</p>")


# -- BaseEmailMessage subclasses (as djoser sends them) through the queue ---------------


class ActivationEmail(BaseEmailMessage):
    """What djoser's email classes look like."""

    template_name = "email/activation.html"

    def get_context_data(self) -> dict[str, Any]:
        context = super().get_context_data()
        user = context.get("user")
        context["uid"] = f"u{user.pk}"
        context["token"] = "tok-123"
        return context


class DjoserStyleTests(TestCase):
    def setUp(self) -> None:
        self.user = User.objects.create_user("mary", "mary@example.com", "secret")

    def activation(self) -> ActivationEmail:
        request = RequestFactory().get("/")
        request.user = self.user
        return ActivationEmail(request, {"user": self.user})

    def send(self, message: ActivationEmail) -> None:
        message.send(
            ['"Doe, Mary" <mary@example.com>'],
            cc=["cc@example.com"],
            bcc=["hidden@example.com"],
            reply_to=["help@example.com"],
            from_email="Accounts <accounts@example.com>",
        )

    @queueing()
    def test_queued_as_plain_fields_never_pickled(self):
        message = self.activation()
        message.lock = threading.Lock()  # a message that cannot be pickled

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the backend must not pickle messages")

        with mock.patch.object(pickle, "dumps", refuse), mock.patch.object(pickle, "loads", refuse):
            self.send(message)
        stored = Email.objects.get()
        self.assertEqual(stored.subject, "Account activation on testserver")
        self.assertIn(f"http://testserver/activate/u{self.user.pk}/tok-123", stored.message)
        self.assertIn("mary &amp; friends", stored.html_message)
        self.assertEqual(stored.from_email, "Accounts <accounts@example.com>")
        self.assertEqual(
            (stored.to, stored.cc, stored.bcc),
            (['"Doe, Mary" <mary@example.com>'], ["cc@example.com"], ["hidden@example.com"]),
        )
        self.assertEqual(stored.headers, {"Reply-To": "help@example.com"})
        self.assertEqual(stored.alternatives, [])

    def test_arrives_as_if_sent_directly(self):
        with sending_directly():
            self.send(self.activation())
        [direct] = django_mail.outbox
        with SMTPSink() as sink, delivering_to(sink):
            self.send(self.activation())
            self.assertEqual(sink.messages, [], "queued, not sent")
            self.assertEqual(Worker().run().sent, 1)
        [received] = sink.messages
        ours, theirs = received.message, parsed(direct)
        self.assertEqual(structure(ours), ("multipart/alternative", ["text/plain", "text/html"]))
        self.assertEqual(structure(ours), structure(theirs))
        self.assertEqual(leaves(ours), leaves(theirs))
        for header in ("Subject", "From", "To", "Cc", "Reply-To", "MIME-Version"):
            self.assertEqual(ours[header], theirs[header], header)
        self.assertIsNone(ours["Bcc"])
        self.assertEqual(sorted(received.rcpt_tos), sorted(addr for _name, addr in getaddresses(direct.recipients())))
        self.assertEqual(received.mail_from, "accounts@example.com")


# -- TemplatedEmailMessage ---------------------------------------------------------------


class Welcome(TemplatedEmailMessage):
    template_name = "email/welcome.html"
    priority = "high"


@queueing(BACKENDS=BACKENDS)
class TemplatedEmailMessageTests(TestCase):
    def test_queue_options_go_through_send(self):
        message = TemplatedEmailMessage(
            context={"name": "Ann"},
            template_name="email/welcome.html",
            priority="low",
            scheduled_time=LATER,
            expires_at=MUCH_LATER,
            backend="bulk",
            language="de",
        )
        message.send(["to@example.com"])
        stored = Email.objects.get()
        self.assertEqual(
            (stored.priority, stored.scheduled_time, stored.expires_at, stored.backend_alias, stored.language),
            (PRIORITY.low, LATER, MUCH_LATER, "bulk", "de"),
        )
        self.assertEqual((stored.subject, stored.message), ("Willkommen, Ann", "Hallo Ann"))

    def test_class_attributes_are_defaults_and_send_arguments_override_them(self):
        Welcome(context={"name": "A"}).send(["a@example.com"])
        Welcome(context={"name": "B"}).send(["b@example.com"], priority="now", language="pt-br")
        first, second = Email.objects.order_by("id")
        self.assertEqual((first.priority, first.language, first.subject), (PRIORITY.high, "", "Welcome to , A & co"))
        self.assertEqual(second.language, "pt-br")
        self.assertEqual(second.subject, "Bem-vindo, B")
        self.assertEqual(second.priority, PRIORITY.now)

    def test_renders_in_its_language(self):
        message = TemplatedEmailMessage(
            context={"when": datetime.date(2025, 1, 5), "yes": True},
            template_name="email/translated.html",
            language="de",
        )
        with translation.override("fr"):
            message.render()
        self.assertEqual((message.subject, message.body), ("[de] Januar", "Ja Januar"))

    def test_rendering_twice_attaches_html_once(self):
        theirs = BaseEmailMessage(context={"name": "Ann"}, template_name="email/welcome.html")
        theirs.render()
        theirs.render()
        # django-templated-mail 1.1.1 attaches the HTML part again on every render.
        self.assertEqual(len(theirs.alternatives), 2)
        ours = TemplatedEmailMessage(context={"name": "Ann"}, template_name="email/welcome.html")
        ours.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
        ours.render()
        ours.render()
        self.assertEqual([a[1] for a in ours.alternatives], ["text/calendar", "text/html"])
        ours.send(["to@example.com"])
        ours.send(["to@example.com"])
        self.assertEqual(Email.objects.count(), 2)
        for stored in Email.objects.all():
            # The HTML part after the calendar keeps its place (the last alternative is the preferred one).
            self.assertEqual([a[1] for a in stored.alternatives], ["text/calendar", "text/html"])
            self.assertTrue(stored.alternatives[1][0].startswith("<p>Hello Ann"))

    def test_html_only_template_gets_a_plain_text_part(self):
        message = TemplatedEmailMessage(context={"what": "it"}, template_name="email/html_only.html")
        message.render()
        message.render()
        self.assertEqual(message.body, "Only it")
        self.assertEqual([tuple(a) for a in message.alternatives], [("<p>Only it</p>", "text/html")])

    def test_html_only_template_rendered_twice(self):
        message = TemplatedEmailMessage(context={"what": "it"}, template_name="email/html_only.html")
        with self.settings(POST_OFFICE={"BACKENDS": BACKENDS, "AUTO_PLAIN_TEXT": False}):
            message.render()
            message.render()
        self.assertEqual((message.body, message.content_subtype, message.alternatives), ("<p>Only it</p>", "html", []))
        message.template_name = "email/welcome.html"
        message.context = {"name": "Ann"}
        message.render()
        self.assertEqual(message.content_subtype, "plain")
        self.assertTrue(message.body.startswith("Hello Ann"))
        self.assertEqual(len(message.alternatives), 1)

    def test_inline_images_are_attached_once(self):
        message = TemplatedEmailMessage(
            context={"logo": ContentFile(PNG, name="logo.png")}, template_name="email/with_logo.html"
        )
        message.attach("notes.txt", "kept", "text/plain")
        message.render()
        message.render()
        self.assertEqual(len(message.attachments), 2)
        self.assertEqual(message.attachments[0][0], "notes.txt")
        part = message.attachments[1]
        self.assertIn(f'src="cid:{part["Content-ID"].strip("<>")}"', message.alternatives[0][0])
        message.send(["to@example.com"])
        self.assertEqual(Email.objects.get().attachments.count(), 2)

    def test_extends_works(self):
        message = TemplatedEmailMessage(context={"name": "Ann", "topic": "Cats"}, template_name="email/child.html")
        message.render()
        self.assertEqual(message.subject, "[] News: Cats")
        self.assertEqual(message.body, "Hi Ann,\nToday: Cats\n-- The  team")

    def test_constructor_addresses_are_kept(self):
        message = TemplatedEmailMessage(
            context={"name": "Ann"},
            template_name="email/welcome.html",
            from_email="me@example.com",
            cc=["cc@example.com"],
            bcc=["bcc@example.com"],
            reply_to=["reply@example.com"],
        )
        message.send(["to@example.com"])
        stored = Email.objects.get()
        self.assertEqual(
            (stored.from_email, stored.cc, stored.bcc), ("me@example.com", ["cc@example.com"], ["bcc@example.com"])
        )
        self.assertEqual(stored.headers, {"Reply-To": "reply@example.com"})

    def test_bad_options_are_refused_at_once(self):
        cases = [
            ({"priority": "urgent"}, InvalidPriority, "priority"),
            ({"scheduled_time": "tomorrow"}, InvalidSchedule, "scheduled_time"),
            ({"scheduled_time": MUCH_LATER, "expires_at": LATER}, InvalidSchedule, "scheduled_time"),
            ({"backend": "nope"}, UnknownBackend, "backend"),
            ({"language": "xx"}, InvalidArgument, "language"),
        ]
        for options, error, field in cases:
            with self.subTest(options), self.assertRaises(error) as caught:
                TemplatedEmailMessage(context={}, template_name="email/welcome.html", **options)
            self.assertEqual(caught.exception.field, field)
        with self.assertRaises(InvalidPriority):
            Welcome(context={"name": "A"}).send(["a@example.com"], priority="urgent")
        self.assertEqual(Email.objects.count(), 0)

    def test_warns_when_another_backend_ignores_the_options(self):
        with sending_directly():
            with self.assertLogs("post_office.templated", "WARNING") as logs:
                message = Welcome(context={"name": "A"})
                message.send(["a@example.com"])
                message.send(["a@example.com"])  # its cached locmem connection is no error
            # Only the language (used for rendering) set: nothing is ignored, nothing logged.
            with self.assertNoLogs("post_office.templated", "WARNING"):
                TemplatedEmailMessage(context={"name": "A"}, template_name="email/welcome.html", language="de").send(
                    ["a@example.com"]
                )
        self.assertEqual(len(logs.output), 2)
        self.assertIn("Welcome was sent at once by django.core.mail.backends.locmem.EmailBackend", logs.output[0])
        self.assertIn("ignores the queue options priority", logs.output[0])
        self.assertEqual(len(django_mail.outbox), 3)
        self.assertEqual(Email.objects.count(), 0)

    def test_exported_from_package(self):
        self.assertIs(post_office.TemplatedEmailMessage, TemplatedEmailMessage)


# -- queue options on any Django message ---------------------------------------------------


@queueing(BACKENDS=BACKENDS)
class QueueOptionsTests(TestCase):
    def test_options_on_a_plain_message(self):
        message = EmailMessage("Hi", "Body", "f@example.com", ["t@example.com"])
        self.assertIs(
            post_office.queue_options(message, priority="high", scheduled_time=LATER, backend="bulk", language="fr"),
            message,
        )
        post_office.queue_options(message, expires_at=MUCH_LATER)  # adds to what was set
        message.send()
        stored = Email.objects.get()
        self.assertEqual(
            (stored.priority, stored.scheduled_time, stored.expires_at, stored.backend_alias, stored.language),
            (PRIORITY.high, LATER, MUCH_LATER, "bulk", "fr"),
        )
        self.assertEqual(stored.message, "Body")

    def test_bad_values_raise_what_mail_send_raises(self):
        cases = [
            {"priority": "urgent"},
            {"priority": True},
            {"scheduled_time": "soon"},
            {"expires_at": 5},
            {"scheduled_time": MUCH_LATER, "expires_at": LATER},
            {"backend": "nope"},
            {"language": "klingon"},
        ]
        for options in cases:
            with self.subTest(options):
                with self.assertRaises(InvalidEmail) as ours:
                    post_office.queue_options(EmailMessage("s", "b", "f@example.com", ["t@example.com"]), **options)
                with self.assertRaises(InvalidEmail) as theirs:
                    mail.send(["t@example.com"], subject="s", **options)
                self.assertIs(type(ours.exception), type(theirs.exception))
                self.assertEqual(str(ours.exception), str(theirs.exception))
        self.assertEqual(Email.objects.count(), 0)

    def test_backend_validates_options_again(self):
        message = EmailMessage("s", "b", "f@example.com", ["t@example.com"])
        message.post_office_options = {"priority": "urgent"}  # set by hand, not validated
        with self.assertRaises(InvalidPriority) as caught:
            message.send()
        self.assertEqual(caught.exception.field, "messages[0].priority")
        message.post_office_options = {"colour": "red"}
        with self.assertRaises(InvalidArgument) as caught:
            message.send()
        self.assertEqual(caught.exception.field, "messages[0].post_office_options")
        self.assertEqual(Email.objects.count(), 0)

    def test_message_options_win_over_backend_options(self):
        backend = post_office.EmailBackend(priority="low", backend="bulk")
        plain = EmailMessage("plain", "b", "f@example.com", ["t@example.com"])
        urgent = post_office.queue_options(
            EmailMessage("urgent", "b", "f@example.com", ["t@example.com"]), priority="now"
        )
        backend.send_messages([plain, urgent])
        stored = {e.subject: (e.priority, e.backend_alias) for e in Email.objects.all()}
        self.assertEqual(stored, {"plain": (PRIORITY.low, "bulk"), "urgent": (PRIORITY.now, "bulk")})

    def test_refused_for_a_message_bound_to_another_backend(self):
        message = EmailMessage("s", "b", "f@example.com", ["t@example.com"], connection=LocmemBackend())
        with self.assertRaises(InvalidArgument) as caught:
            post_office.queue_options(message, priority="high", scheduled_time=LATER)
        self.assertEqual(caught.exception.field, "connection")
        self.assertIn("sends at once and would ignore priority, scheduled_time", str(caught.exception))
        with self.assertRaises(InvalidArgument):
            TemplatedEmailMessage(template_name="email/welcome.html", connection=LocmemBackend(), priority="high")
        # The language alone is no queue-only option: it is allowed (and used for rendering).
        post_office.queue_options(message, language="de")
        message = TemplatedEmailMessage(
            context={"name": "A"}, template_name="email/welcome.html", connection=LocmemBackend(), language="de"
        )
        message.send(["to@example.com"])
        self.assertEqual(django_mail.outbox[-1].subject, "Willkommen, A")
        self.assertEqual(Email.objects.count(), 0)

    def test_other_backends_send_at_once(self):
        # Documented: only post_office.EmailBackend reads the options.
        message = post_office.queue_options(
            EmailMessage("s", "b", "f@example.com", ["t@example.com"]),
            scheduled_time=timezone.now() + datetime.timedelta(days=1),
        )
        with sending_directly():
            message.send()
        self.assertEqual(len(django_mail.outbox), 1)
        self.assertEqual(Email.objects.count(), 0)

    def test_only_email_messages(self):
        with self.assertRaises(InvalidArgument) as caught:
            post_office.queue_options("not a message", priority="high")  # type: ignore[type-var]
        self.assertEqual(caught.exception.field, "message")
