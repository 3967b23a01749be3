"""post_office.message.wire writes what Django's SMTP backend would send, without Django's message objects."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import random
import re
import smtplib
import sys
from unittest import mock

from django.core.mail.message import sanitize_address
from django.test import SimpleTestCase, override_settings

from post_office.exceptions import InvalidHeader
from post_office.message import parts, wire
from post_office.message.compose import build_message
from post_office.models import Email

from .helpers import DJANGO_61

DATE = "Sun, 22 Nov 2026 08:00:00 -0000"
MSGID = "<generated@example.com>"
WORDS = ["Hello", "world", "Grüße", "naïve", "日本語", "x" * 30, "a.b", "From", ".", "=?utf-8?q?x?=", "tab\there", ""]
NEWLINES = ["\n", "\r\n", "\r", "\n\n"]
ADDRESSES = [
    "user@example.com",
    "Jane Doe <jane@example.com>",
    '"Doe, John" <john@example.com>',
    "o'brien+tag@sub.example.org",
    "Zoë <zoe@example.com>",
    "user@exämple.com",
]


def _text(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))))
        out.append(rng.choice(NEWLINES))
    if rng.random() < 0.5 and out:
        out.pop()  # no newline at the end
    return "".join(out)


def _random_email(rng: random.Random) -> Email:
    headers: dict[str, str] = {}
    if rng.random() < 0.5:
        headers["X-Seq"] = str(rng.randint(0, 10**6))
    if rng.random() < 0.2:
        headers["Reply-To"] = rng.choice(ADDRESSES)
    if rng.random() < 0.1:
        headers["X-Long"] = " ".join(rng.choice(WORDS) for _ in range(30))
    if rng.random() < 0.1:
        headers["to"] = "Undisclosed <list@example.com>"
    if rng.random() < 0.1:
        headers["Date"] = "Mon, 01 Jan 2024 00:00:00 -0000"
    body = _text(rng, rng.randint(0, 8)) if rng.random() < 0.8 else ""
    html = "<p>" + _text(rng, rng.randint(0, 8)) + "</p>" if rng.random() < 0.6 else ""
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 16))).replace("\t", " ")
    instance = Email(
        from_email=rng.choice(ADDRESSES),
        to=rng.sample(ADDRESSES, rng.randint(1, 3)),
        cc=rng.sample(ADDRESSES, rng.randint(0, 2)),
        bcc=rng.sample(ADDRESSES, rng.randint(0, 1)),
        subject=subject,
        message=body,
        html_message=html,
        headers=headers or None,
        message_id=rng.choice([None, "<stored@example.com>"]),
    )
    instance.loaded_attachments = []
    return instance


def _django_bytes(instance: Email) -> bytes:
    message = build_message(instance)
    if DJANGO_61:
        return message.message(policy=email.policy.SMTP).as_bytes()
    return message.message().as_bytes(linesep="\r\n")


def _django_envelope(instance: Email) -> tuple[str, list[str]]:
    """The envelope Django's SMTP backend gives smtplib, as smtplib writes it."""
    message = build_message(instance)
    unquote = lambda address: smtplib.quoteaddr(sanitize_address(address, "utf-8"))[1:-1]  # noqa: E731
    return unquote(message.from_email), [unquote(address) for address in message.recipients()]


def _same_boundaries(data: bytes) -> bytes:
    for number, boundary in enumerate(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', data))):
        data = data.replace(boundary, b"BOUNDARY-%d" % number)
    return data


class SerializeTest(SimpleTestCase):
    def _pair(self, instance: Email) -> tuple[wire.Wire | None, bytes]:
        patches = [
            mock.patch.object(wire, "formatdate", lambda *a, **k: DATE),
            mock.patch.object(wire, "make_msgid", lambda *a, **k: MSGID),
            mock.patch("django.core.mail.message.make_msgid", lambda *a, **k: MSGID),
        ]
        if not DJANGO_61:  # Django 6.1 dates its messages with datetime.now(): its Date is compared loosely
            patches.append(mock.patch("django.core.mail.message.formatdate", lambda *a, **k: DATE))
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            return wire.serialize(instance), _django_bytes(instance)

    def test_random_emails_match_django(self):
        rng = random.Random(20261122)
        fast = 0
        for number in range(1500):
            instance = _random_email(rng)
            ours, theirs = self._pair(instance)
            if ours is None:
                # Only non-ASCII addresses (envelope or Reply-To) leave the fast path in this mix.
                addresses = [instance.from_email, *instance.to, *instance.cc, *instance.bcc]
                addresses += [v for k, v in (instance.headers or {}).items() if k.lower() in ("reply-to", "to")]
                self.assertTrue(any(not a.isascii() for a in addresses), (number, instance.__dict__))
                continue
            fast += 1
            with self.subTest(number=number):
                self.assertEqual((ours.sender, ours.recipients), _django_envelope(instance))
                if DJANGO_61:
                    self.assertSameParsed(ours.data, theirs, instance.subject)
                else:
                    self.assertEqual(_same_boundaries(ours.data), _same_boundaries(theirs))
        self.assertGreater(fast, 200)

    def assertSameParsed(self, ours: bytes, theirs: bytes, subject: str) -> None:
        """Django 6.1 writes messages with the modern email API; compare what a mail client reads.

        Known, harmless differences are normalised: 6.1 adds a final newline to
        text parts, folds whitespace differently, and its parser turns literal
        text that looks like an encoded word (``=?utf-8?q?x?=``) into the word.
        The subject is compared with the email's own: 6.1 drops the space
        between some non-ASCII words (``here Grüße`` arrives as ``hereGrüße``).
        """
        mine = email.message_from_bytes(ours, policy=email.policy.default)
        other = email.message_from_bytes(theirs, policy=email.policy.default)
        if "=?" not in subject:  # ASCII text that looks like an encoded word is decoded by parsers (compat32)
            self.assertEqual(" ".join(str(mine["Subject"]).split()), " ".join(subject.split()))
        for name in ("From", "To", "Cc", "Reply-To", "Message-ID", "X-Seq", "X-Long"):
            if "=?" not in str(mine[name]):
                self.assertEqual(" ".join(str(mine[name]).split()), " ".join(str(other[name]).split()), name)
        if str(mine["Date"]) != DATE:  # given in the headers: the same text
            self.assertEqual(str(mine["Date"]), str(other["Date"]))

        def parts(message: email.message.Message) -> list[tuple[str, str]]:
            return [
                (part.get_content_type(), part.get_content().replace("\r\n", "\n").rstrip("\n"))  # type: ignore[attr-defined]
                for part in message.walk()
                if not part.is_multipart()
            ]

        self.assertEqual(parts(mine), parts(other))

    def test_common_shape_bytes(self):
        instance = Email(
            from_email="Shop <shop@example.com>",
            to=["user@example.com"],
            cc=[],
            bcc=["audit@example.com"],
            subject="Your order",
            message="Hi,\nthanks.\n",
            html_message="<p>Hi</p>",
            headers={"X-Seq": "7"},
            message_id="<m1@example.com>",
        )
        instance.loaded_attachments = []
        ours, theirs = self._pair(instance)
        assert ours is not None
        self.assertEqual(ours.sender, "shop@example.com")
        self.assertEqual(ours.recipients, ["user@example.com", "audit@example.com"])
        self.assertNotIn(b"audit@", ours.data)  # bcc is envelope only
        self.assertIn(b"Content-Type: multipart/alternative;\r\n boundary=", ours.data)
        self.assertIn(b'Content-Type: text/plain; charset="utf-8"\r\nMIME-Version: 1.0\r\n', ours.data)
        self.assertIn(b"\r\n\r\nHi,\r\nthanks.\r\n\r\n--", ours.data)
        if not DJANGO_61:
            self.assertEqual(_same_boundaries(ours.data), _same_boundaries(theirs))

    @override_settings(POST_OFFICE={"OVERRIDE_RECIPIENTS": ["qa@example.com"]})
    def test_override_recipients(self):
        instance = Email(from_email="a@example.com", to=["x@example.com"], cc=["y@example.com"], bcc=[], subject="s")
        instance.message, instance.html_message, instance.loaded_attachments = "b", "", []
        ours, theirs = self._pair(instance)
        assert ours is not None
        self.assertEqual(ours.recipients, ["qa@example.com"])
        self.assertIn(b"To: qa@example.com\r\n", ours.data)
        self.assertNotIn(b"y@example.com", ours.data)

    def test_general_path_for_other_shapes(self):
        base = {"from_email": "a@example.com", "to": ["b@example.com"], "cc": [], "bcc": [], "subject": "s"}
        cases = {
            "attachments": dict(message="x"),
            "not loaded": dict(message="x"),
            "alternatives": dict(message="x", alternatives=[["<x/>", "text/x-custom"]]),
            "render on delivery": dict(context={"a": 1}),
            "long line": dict(message="y" * 999),
            "non-ascii address": dict(message="x", to=["Zoë <zoe@example.com>"]),
        }
        for name, fields in cases.items():
            with self.subTest(name):
                instance = Email(**{**base, **fields})
                if name == "attachments":
                    instance.loaded_attachments = [object()]
                elif name != "not loaded":
                    instance.loaded_attachments = []
                self.assertIsNone(wire.serialize(instance))

    def test_an_injection_in_a_stored_address_is_refused(self):
        instance = Email(
            from_email="a@example.com", to=["b@example.com>\r\nRCPT TO:<evil@example.com"], cc=[], bcc=[], subject="s"
        )
        instance.message, instance.loaded_attachments = "x", []
        with self.assertRaises(InvalidHeader):
            wire.serialize(instance)

    @override_settings(DEFAULT_CHARSET="iso-8859-1")
    def test_other_default_charset_goes_the_general_way(self):
        instance = Email(from_email="a@example.com", to=["b@example.com"], cc=[], bcc=[], subject="s", message="x")
        instance.loaded_attachments = []
        self.assertIsNone(wire.serialize(instance))


class EnvelopeAddressTest(SimpleTestCase):
    def test_matches_django_and_smtplib(self):
        for address in [
            "user@example.com",
            "Jane Doe <jane@example.com>",
            '"Doe, John" <john@example.com>',
            "first.last+tag@mail.example.co.uk",
            "Dr. J. Smith <js@example.com>",
        ]:
            with self.subTest(address):
                expected = smtplib.quoteaddr(sanitize_address(address, "utf-8"))[1:-1]
                self.assertEqual(wire.envelope_address(address), expected)

    def test_refuses_what_needs_a_parser(self):
        for address in ["Zoë <z@example.com>", "a@exämple.com", "a b@example.com", "<a@example.com>\r\n", "a@b..c>"]:
            with self.subTest(address):
                self.assertIsNone(wire.envelope_address(address))


class BoundaryTest(SimpleTestCase):
    def test_boundaries_are_distinct_and_in_the_standard_format(self):
        boundaries = [parts.new_boundary() for _ in range(2000)]
        self.assertEqual(len(set(boundaries)), len(boundaries))
        for boundary in boundaries:
            self.assertRegex(boundary, r"\A={15}\d{19}==\Z")
            self.assertLess(int(boundary[15:-2]), sys.maxsize)

    def test_a_forked_worker_draws_its_own_key(self):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its key and leave at once, whatever happens
            try:
                os.write(write, parts._Boundaries.key)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        child_key = os.read(read, 64)
        os.close(read)
        os.close(write)
        self.assertEqual(len(child_key), 32)
        self.assertNotEqual(child_key, parts._Boundaries.key)
