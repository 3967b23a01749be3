"""No header the caller did not ask for ever reaches the wire: one rule for every line break and NUL.

The rule (``post_office.validation.HEADER_BREAKS``) is every character
``str.splitlines()`` breaks a line at, plus NUL. The validation matrix
(tests/test_validation.py) runs it on every entry point for subjects, header
names and values, Reply-To and addresses; here: attachments, rows written
around the entry points, and the bytes both ways of writing produce.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from django.core.mail import EmailMessage
from django.db import connection
from django.test import SimpleTestCase, TestCase

from post_office import mail
from post_office.backends import EmailBackend
from post_office.choices import STATUS
from post_office.compat import DJANGO_61
from post_office.delivery import Worker
from post_office.exceptions import InvalidAttachment, InvalidHeader, PostOfficeError
from post_office.message.compose import build_message
from post_office.message.wire import serialize
from post_office.models import Attachment, Email, Log
from post_office.validation import HEADER_BREAKS, header_break
from tests.backends import RecordingBackend
from tests.helpers import queueing

SENDER = "sender@example.com"
#: How a lenient mail server may end a header line: every break, as UTF-8 bytes.
LENIENT_LINE_END = re.compile(b"|".join(re.escape(char.encode()) for char in HEADER_BREAKS if char != "\x00"))


def header_names(data: bytes) -> set[str]:
    """The names of the top-level headers a lenient server would see (space before the colon stripped)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in LENIENT_LINE_END.split(head):
        if line and line[:1] not in (b" ", b"\t") and b":" in line:
            names.add(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
    return names


#: The headers a caller of WireBytesTest and StoredRowsTest asks for (with what Django adds).
EXPECTED_HEADERS = {
    "content-type",
    "mime-version",
    "content-transfer-encoding",
    "subject",
    "from",
    "to",
    "cc",
    "reply-to",
    "date",
    "message-id",
    "x-custom",
}


def _as_bytes(message: Any) -> bytes:
    """What Django's SMTP backend writes (CRLF line ends), on 5.2's and 6.1's message classes."""
    if DJANGO_61:
        return bytes(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
    return bytes(message.as_bytes(linesep="\r\n"))


def assert_no_unasked_headers(test: SimpleTestCase, email: Email) -> dict[str, str]:
    """Write ``email`` both ways; each is refused (a PostOfficeError) or holds only the headers asked for."""
    outcomes = {}
    for label, write in (
        ("wire", lambda: serialize(email)),
        ("django", lambda: _as_bytes(build_message(email).message())),
    ):
        try:
            written = write()
        except PostOfficeError:
            outcomes[label] = "refused"
            continue
        data = written.data if hasattr(written, "data") else written
        if data is None:
            outcomes[label] = "not this way"
            continue
        test.assertLessEqual(header_names(data), EXPECTED_HEADERS, data[:600])
        outcomes[label] = "clean"
    return outcomes


class RuleTest(SimpleTestCase):
    def test_the_rule_is_every_line_break_of_splitlines_and_nul(self):
        breaks = {chr(code) for code in range(sys.maxunicode + 1) if len(f"a{chr(code)}b".splitlines()) > 1}
        self.assertEqual(set(HEADER_BREAKS), breaks | {"\x00"})

    def test_the_error_shows_the_character(self):
        self.assertIn("U+2028 LINE SEPARATOR", header_break("a\u2028b"))
        self.assertIn("U+0000 NUL", header_break("a\x00b"))
        self.assertIsNone(header_break("Grüße: à bientôt, 東京"))


class AttachmentTest(TestCase):
    def test_attachment_names_and_types_are_refused_with_a_break(self):
        for char in HEADER_BREAKS:
            with self.subTest(repr(char)):
                with self.assertRaises(InvalidAttachment) as name:
                    mail.send(["a@example.com"], SENDER, subject="S", attachments={f"a{char}b.txt": b"x"})
                self.assertIn(f"U+{ord(char):04X}", str(name.exception))
                with self.assertRaises(InvalidAttachment) as mimetype:
                    mail.send(
                        ["a@example.com"],
                        SENDER,
                        subject="S",
                        attachments={"a.txt": {"file": b"x", "mimetype": f"application/x{char}X-Injected: yes"}},
                    )
                self.assertEqual(mimetype.exception.field, "attachments['a.txt']['mimetype']")
        self.assertEqual(Email.objects.count() + Attachment.objects.count(), 0)

    def test_a_django_message_attachment_is_refused_the_same_way(self):
        message = EmailMessage("S", "B", SENDER, ["a@example.com"])
        message.attach("bad\x0bname.txt", b"x", "text/plain")
        with queueing(), self.assertRaises(InvalidAttachment):
            EmailBackend().send_messages([message])
        self.assertEqual(Email.objects.count(), 0)

    def test_a_tuple_mimetype_with_crlf_is_refused(self):
        with self.assertRaises(InvalidAttachment):
            mail.send(
                ["a@example.com"],
                SENDER,
                subject="S",
                attachments=[("a.bin", b"x", "application/x\r\nX-Injected: yes")],
            )


class StoredRowsTest(TestCase):
    """Rows written around the entry points (the ORM, an old version) are refused at delivery, for good."""

    def stored(self, **fields):
        values = {"from_email": SENDER, "to": ["a@example.com"], "subject": "S", "message": "B", **fields}
        # A bulk write skips the checks Email.objects.create() makes, as an old version or raw SQL would.
        [email] = Email.objects.bulk_create([Email(status=STATUS.queued, **values)])
        email.loaded_attachments = []
        return email

    def test_both_ways_of_writing_refuse_a_break_in_any_header_text(self):
        # PostgreSQL cannot store NUL in text at all, so no row there can hold one.
        for char in [c for c in HEADER_BREAKS if c != "\x00" or connection.vendor != "postgresql"]:
            for fields in (
                {"subject": f"Hi{char}X-Injected : 1"},
                {"from_email": f"Evil{char}X-Injected: 1 <{SENDER}>"},
                {"to": [f"Al{char}X-Injected: 1 <a@example.com>"]},
                {"headers": {"X-Custom": f"v{char}X-Injected : victim@example.com"}},
                {"headers": {f"X-Injected{char}X-Custom": "v"}},
                {"message_id": f"<id{char}X-Injected: 1@example.com>"},
            ):
                with self.subTest(char=repr(char), fields=fields):
                    email = self.stored(**fields)
                    # The byte-level check of WireBytesTest; here each way of writing refuses first.
                    self.assertEqual(assert_no_unasked_headers(self, email), {"wire": "refused", "django": "refused"})

    def test_a_stored_attachment_name_with_a_break_is_refused(self):
        email = self.stored()
        attachment = Attachment.objects.create(name="a\x1cb.txt", mimetype="text/plain", content_hash="0" * 64)
        attachment.emails.add(email)
        email.loaded_attachments = None
        with self.assertRaises(InvalidAttachment):
            build_message(email)

    def test_the_worker_fails_such_an_email_once_and_delivers_the_rest(self):
        RecordingBackend.reset()
        with self.settings(POST_OFFICE={"BACKENDS": {"default": "tests.backends.RecordingBackend"}}):
            bad = self.stored(subject="Hi\x0bReply-To : attacker@example.com")
            good = self.stored(subject="fine")
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (1, 1, 0))
        bad.refresh_from_db()
        good.refresh_from_db()
        self.assertEqual((bad.status, good.status), (STATUS.failed, STATUS.sent))
        log = Log.objects.get(email=bad)
        self.assertEqual(log.exception_type, "InvalidHeader")
        self.assertIn("U+000B", log.message)
        self.assertEqual([m.subject for m in RecordingBackend.sent], ["fine"])


class WireBytesTest(TestCase):
    """What both ways of writing put on the wire holds no header but those asked for, for any accepted input."""

    TRICKY = [
        "Reply-To : attacker@example.com",
        "Bcc: victim@example.com",
        "a\tb  c",
        "Grüße aus Köln: à bientôt, 東京 " * 8,
        "=?utf-8?q?Bcc=3A_x?=",
        "x" * 300,
        ": colon first",
        "trailing space ",
    ]

    def test_no_header_appears_that_the_caller_did_not_ask_for(self):
        checked = 0
        for text in self.TRICKY:
            for html in ("", "<p>html</p>"):
                email = mail.send(
                    [f'"{text[:40]}" <a@example.com>'],
                    f"Sender <{SENDER}>",
                    subject=text,
                    message="Body",
                    html_message=html,
                    cc=["c@example.com"],
                    headers={"X-Custom": text, "Reply-To": "reply@example.com"},
                )
                email.refresh_from_db()
                email.loaded_attachments = []
                with self.subTest(text=text, html=bool(html)):
                    outcomes = assert_no_unasked_headers(self, email)
                    self.assertEqual(outcomes["django"], "clean")
                    checked += list(outcomes.values()).count("clean")
        self.assertGreater(checked, len(self.TRICKY) * 2)  # Django's path at least, for each input

    def test_an_error_at_delivery_is_permanent(self):
        from post_office.retry import is_permanent

        self.assertTrue(is_permanent(InvalidHeader("subject", "x", "contains a line break")))
        self.assertTrue(issubclass(InvalidHeader, PostOfficeError))
