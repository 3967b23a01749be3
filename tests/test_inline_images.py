"""Inline images: ``{% inline_image %}`` sources, storage, MIME structure and what arrives over SMTP."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import tempfile

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.template import engines
from django.test import TestCase, modify_settings, override_settings

from post_office import mail
from post_office.delivery import Worker
from post_office.exceptions import InvalidInlineImage
from post_office.inline import CID_DOMAIN, is_inline_cid
from post_office.models import STATUS, Attachment, Email, EmailTemplate, Log
from post_office.rendering import render_preview
from tests.helpers import delivering_to
from tests.smtp_sink import SMTPSink

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
GIF = b"GIF89a" + bytes(range(32))
HTML = '{% load post_office %}<p>Hi {{ name }}</p><img src="{% inline_image "img/logo.png" %}" alt="Logo">'
POST_OFFICE_TEMPLATES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True},
    {"BACKEND": "post_office.template.backends.post_office.PostOfficeTemplates", "APP_DIRS": True},
]


def po(**extra):
    return override_settings(POST_OFFICE={**settings.POST_OFFICE, **extra})


def parse(message):
    """A Django message as it goes on the wire, parsed back."""
    return email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)


def structure(part):
    if part.is_multipart():
        return (part.get_content_type(), [structure(p) for p in part.iter_parts()])
    return part.get_content_type()


def related_of(parsed):
    [related] = [part for part in parsed.walk() if part.get_content_type() == "multipart/related"]
    html, *images = list(related.iter_parts())
    return html, images


class StaticFilesMixin:
    """A STATIC_ROOT with img/logo.png, and a clean default storage."""

    def setUp(self):
        super().setUp()
        self.static_root = tempfile.mkdtemp()
        os.makedirs(os.path.join(self.static_root, "img"))
        with open(os.path.join(self.static_root, "img", "logo.png"), "wb") as handle:
            handle.write(PNG)
        with open(os.path.join(self.static_root, "img", "notes.txt"), "wb") as handle:
            handle.write(b"not an image")
        self.addCleanup(shutil.rmtree, self.static_root)
        self.media_root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.media_root)
        overrides = override_settings(STATIC_ROOT=self.static_root, MEDIA_ROOT=self.media_root)
        overrides.enable()
        self.addCleanup(overrides.disable)


class InlineImageTagTest(StaticFilesMixin, TestCase):
    def setUp(self):
        super().setUp()
        EmailTemplate.objects.create(name="logo", subject="Logo", content="text", html_content=HTML)

    def test_enqueue_stores_the_image_as_an_inline_attachment(self):
        email_obj = mail.send("a@example.com", template="logo", context={"name": "Ann"})
        attachment = Attachment.objects.get()
        cid = attachment.headers["Content-ID"].strip("<>")
        self.assertTrue(cid.endswith("@" + CID_DOMAIN))
        self.assertIn(f'src="cid:{cid}"', email_obj.html_message)
        self.assertEqual(attachment.headers["Content-Disposition"], 'inline; filename="logo.png"')
        self.assertEqual((attachment.name, attachment.mimetype), ("logo.png", "image/png"))
        with attachment.file.open("rb") as handle:
            self.assertEqual(handle.read(), PNG)
        # Many emails, one image: one stored attachment shared by all.
        mail.send_many([{"recipients": [f"u{i}@example.com"], "template": "logo", "context": {}} for i in range(3)])
        self.assertEqual(Attachment.objects.count(), 1)
        self.assertEqual(Attachment.emails.through.objects.count(), 4)

    def test_mime_structure(self):
        email_obj = mail.send("a@example.com", template="logo", context={"name": "Ann"})
        parsed = parse(Email.objects.get(pk=email_obj.pk).email_message())
        self.assertEqual(
            structure(parsed),
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
        )
        self.assertEqual(parsed.get_body(("plain",)).get_content().strip(), "text")
        related = next(part for part in parsed.walk() if part.get_content_type() == "multipart/related")
        self.assertEqual(related.get_param("type"), "text/html")

    def test_with_other_attachments_and_html_only(self):
        email_obj = mail.send("a@example.com", template="logo", attachments={"doc.txt": b"document"})
        self.assertEqual(
            structure(parse(email_obj.email_message())),
            (
                "multipart/mixed",
                [
                    ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
                    "text/plain",
                ],
            ),
        )
        EmailTemplate.objects.create(name="html-only", html_content=HTML)
        with po(AUTO_PLAIN_TEXT=False):
            html_only = mail.send("a@example.com", template="html-only", context={"name": "Bo"})
        parsed = parse(html_only.email_message())
        self.assertEqual(structure(parsed), ("multipart/related", ["text/html", "image/png"]))
        self.assertEqual(parsed["To"], "a@example.com")
        self.assertIn("Hi Bo", parsed.get_body(("html",)).get_content())

    def test_auto_plain_text_uses_the_alt_text(self):
        email_obj = mail.send("a@example.com", template=EmailTemplate.objects.create(name="h", html_content=HTML))
        self.assertEqual(email_obj.message, "Hi\n\nLogo")

    def test_storage_path_and_file_object(self):
        default_storage.save("uploads/pic.gif", ContentFile(GIF))
        EmailTemplate.objects.create(
            name="sources",
            html_content=(
                "{% load post_office %}<img src=\"{% inline_image 'uploads/pic.gif' %}\">"
                '<img src="{% inline_image photo %}"><img src="{% inline_image \'uploads/pic.gif\' %}">'
            ),
        )
        email_obj = mail.send("a@example.com", template="sources", context={"photo": ContentFile(PNG, name="me.png")})
        rows = {row.name: row for row in Attachment.objects.all()}
        self.assertEqual(sorted(rows), ["me.png", "pic.gif"])
        self.assertEqual(rows["pic.gif"].mimetype, "image/gif")
        # The same image used twice is one part.
        self.assertEqual(email_obj.html_message.count(rows["pic.gif"].headers["Content-ID"].strip("<>")), 2)
        html, images = related_of(parse(email_obj.email_message()))
        self.assertEqual([image.get_filename() for image in images], ["pic.gif", "me.png"])

    @override_settings(DEBUG=True)
    def test_missing_image_is_an_error_in_development(self):
        EmailTemplate.objects.create(
            name="missing", html_content="{% load post_office %}{% inline_image 'img/nope.png' %}"
        )
        with self.assertRaises(InvalidInlineImage) as raised:
            mail.send("a@example.com", template="missing")
        self.assertIn("'img/nope.png' was not found", str(raised.exception))
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Attachment.objects.exists())

    @override_settings(DEBUG=False)
    def test_missing_image_is_a_warning_in_production(self):
        EmailTemplate.objects.create(
            name="missing", html_content='{% load post_office %}<img src="{% inline_image "img/nope.png" %}">'
        )
        with self.assertLogs("post_office", "WARNING") as logs:
            email_obj = mail.send("a@example.com", template="missing")
        self.assertIn("img/nope.png", logs.output[0])
        self.assertEqual(email_obj.html_message, '<img src="">')
        self.assertFalse(Attachment.objects.exists())

    @override_settings(DEBUG=True)
    def test_unsafe_and_non_image_sources_are_refused(self):
        for source in ("../../etc/passwd", "/etc/passwd", "img/notes.txt", ""):
            with self.subTest(source):
                template = EmailTemplate(
                    name="bad", html_content="{% load post_office %}{% inline_image " + repr(source) + " %}"
                )
                with self.assertRaises(InvalidInlineImage):
                    render_preview(template)

    def test_outside_an_html_body_renders_nothing(self):
        EmailTemplate.objects.create(
            name="subject", subject="{% load post_office %}[{% inline_image 'img/logo.png' %}]"
        )
        self.assertEqual(mail.send("a@example.com", template="subject").subject, "[]")
        self.assertEqual(
            engines["django"].from_string("{% load post_office %}[{% inline_image 'img/logo.png' %}]").render(), "[]"
        )

    def test_static_files_finders(self):
        with (
            modify_settings(INSTALLED_APPS={"append": "django.contrib.staticfiles"}),
            override_settings(STATIC_ROOT=None, STATICFILES_DIRS=[self.static_root], STATIC_URL="/static/"),
        ):
            email_obj = mail.send("a@example.com", template="logo")
        attachment = Attachment.objects.get()
        with attachment.file.open("rb") as handle:
            self.assertEqual(handle.read(), PNG)
        self.assertIn(attachment.headers["Content-ID"].strip("<>"), email_obj.html_message)

    def test_preview_returns_the_images_as_data(self):
        with self.assertNumQueries(1):
            preview = render_preview("logo", {"name": "Ann"})
        [image] = preview.inline_images
        self.assertEqual((image.filename, image.mimetype, image.content), ("logo.png", "image/png", PNG))
        self.assertIn(f"cid:{image.cid}", preview.html_message)
        self.assertIn(image.data_uri, preview.html_with_data_uris())
        self.assertTrue(image.data_uri.startswith("data:image/png;base64,"))
        self.assertFalse(Attachment.objects.exists())

    def test_django_post_office_template_backend(self):
        # The backend path of django-post_office's docs; the tag library is built in.
        with override_settings(TEMPLATES=POST_OFFICE_TEMPLATES), po(TEMPLATE_ENGINE="post_office"):
            self.assertEqual(engines["post_office"].__class__.__name__, "PostOfficeTemplates")
            EmailTemplate.objects.create(name="builtin", html_content='<img src="{% inline_image "img/logo.png" %}">')
            email_obj = mail.send("a@example.com", template="builtin")
        self.assertIn("cid:", email_obj.html_message)
        self.assertEqual(Attachment.objects.count(), 1)

    def test_user_attachments_with_content_id_stay_where_they_were(self):
        # Only images made by the tag go next to the HTML; a caller's own parts are left alone.
        email_obj = mail.send(
            "a@example.com",
            subject="s",
            message="t",
            html_message='<img src="cid:mine@example.com">',
            attachments={
                "mine.png": {"file": PNG, "mimetype": "image/png", "headers": {"Content-ID": "<mine@example.com>"}}
            },
        )
        self.assertFalse(is_inline_cid(Attachment.objects.get().headers))
        self.assertEqual(
            structure(parse(email_obj.email_message())),
            ("multipart/mixed", [("multipart/alternative", ["text/plain", "text/html"]), "image/png"]),
        )


class MakeRelatedTest(TestCase):
    """The in-place conversion works on both message classes (Django 5.2 builds compat32, 6.1 MIMEPart)."""

    def test_modern_message_class(self):
        from post_office.message.parts import make_related

        message = email.message.EmailMessage()
        message["Subject"] = "Modern"
        message.set_content("<p>Hi <img src='cid:x@inline.post-office'></p>", subtype="html")
        image = email.message.MIMEPart()
        image.set_content(PNG, maintype="image", subtype="png", cid="<x@inline.post-office>", disposition="inline")
        make_related(message, [image])
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        self.assertEqual(parsed["Subject"], "Modern")
        self.assertEqual(structure(parsed), ("multipart/related", ["text/html", "image/png"]))
        html, [found] = related_of(parsed)
        self.assertIn("cid:x@inline.post-office", html.get_content())
        self.assertEqual((found["Content-ID"], found.get_payload(decode=True)), ("<x@inline.post-office>", PNG))


class InlineImageDeliveryTest(StaticFilesMixin, TestCase):
    """What arrives at a real SMTP server."""

    def setUp(self):
        super().setUp()
        EmailTemplate.objects.create(name="logo", subject="Logo for {{ name }}", content="text", html_content=HTML)

    def deliver(self, **send_kwargs):
        with SMTPSink() as sink, delivering_to(sink):
            mail.send("to@example.com", "from@example.com", template="logo", context={"name": "Ann"}, **send_kwargs)
            stats = Worker(threads=1).run()
        self.assertEqual(stats.sent, 1, list(Log.objects.values_list("message", flat=True)))
        [received] = sink.messages
        return received.message

    def assert_related_image(self, parsed):
        self.assertEqual(
            structure(parsed),
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
        )
        html, [image] = related_of(parsed)
        content_id = image["Content-ID"]
        self.assertRegex(content_id, rf"^<[0-9a-f]{{32}}@{CID_DOMAIN}>$")
        self.assertIn(f'src="cid:{content_id.strip("<>")}"', html.get_content())
        self.assertEqual(image.get_content_disposition(), "inline")
        self.assertEqual(image.get_filename(), "logo.png")
        self.assertEqual(image.get_payload(decode=True), PNG)

    def test_rendered_at_enqueue(self):
        parsed = self.deliver()
        self.assert_related_image(parsed)
        self.assertEqual(parsed["Subject"], "Logo for Ann")

    def test_rendered_at_delivery(self):
        parsed = self.deliver(render_on_delivery=True)
        self.assert_related_image(parsed)
        self.assertEqual(parsed["Subject"], "Logo for Ann")
        # Nothing was stored for the image: it was read when the email was built.
        self.assertFalse(Attachment.objects.exists())

    @override_settings(DEBUG=True)
    def test_missing_image_at_delivery_fails_for_good(self):
        os.remove(os.path.join(self.static_root, "img", "logo.png"))
        email_obj = mail.send("to@example.com", template="logo", context={}, render_on_delivery=True)
        stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 1, 0))
        email_obj.refresh_from_db()
        self.assertEqual(email_obj.status, STATUS.failed)
        self.assertEqual(Log.objects.get(email=email_obj).exception_type, "InvalidInlineImage")
