"""The serialisation shortcuts of post_office.message (compose, parts) give byte-for-byte Django's output."""

from __future__ import annotations

import email.policy
import random
import re
import string
from email._policybase import Compat32

from django.core.mail import EmailMultiAlternatives
from django.test import SimpleTestCase

from post_office.message.compose import QueuedMessage
from post_office.message.parts import FastCompat32

from .helpers import DJANGO_61

HEADER_NAMES = ["Subject", "From", "To", "Cc", "Reply-To", "Message-ID", "Date", "X-Long-Custom-Header-Name"]
ALPHABET = string.ascii_letters + string.digits + " \t,;:<>@.\"'()=-_/!?[]"


class FastFoldTest(SimpleTestCase):
    def test_same_as_compat32_for_random_headers(self):
        # Short printable ASCII takes the shortcut; everything else the general
        # algorithm: either way the result must be compat32's.
        rng = random.Random(20261122)
        standard, fast = Compat32(linesep="\r\n"), FastCompat32(linesep="\r\n")
        for _ in range(20000):
            name = rng.choice(HEADER_NAMES)
            value = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 120)))
            if rng.random() < 0.1:
                value += rng.choice(["é", "\u2603", "\n x", "\r\n\ty"])
            self.assertEqual(fast._fold(name, value, False), standard._fold(name, value, False), (name, value))


def _messages(**kwargs):
    fixed = {"Message-ID": "<fixed@example.com>", "Date": "Sun, 22 Nov 2026 08:00:00 -0000"}
    kwargs.setdefault("headers", {}).update(fixed)
    return QueuedMessage(**kwargs), EmailMultiAlternatives(**kwargs)


def _wire_bytes(message: EmailMultiAlternatives) -> bytes:
    """What Django's SMTP backend sends for a message."""
    if DJANGO_61:
        return message.message(policy=email.policy.SMTP).as_bytes()
    return message.message().as_bytes(linesep="\r\n")


def _without_boundaries(data: bytes) -> bytes:
    boundaries = list(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', data)))
    for number, boundary in enumerate(boundaries):
        data = data.replace(boundary, b"BOUNDARY-%d" % number)
    return data


class QueuedMessageTest(SimpleTestCase):
    def assertSameBytes(self, ours: QueuedMessage, django_message: EmailMultiAlternatives) -> None:
        mine = _without_boundaries(_wire_bytes(ours))
        theirs = _without_boundaries(_wire_bytes(django_message))
        self.assertEqual(mine, theirs)

    def test_multipart_with_attachments_and_unicode(self):
        ours, theirs = _messages(
            subject="Grüße, a subject long enough to be folded by the general algorithm " * 2,
            body="Plain text body\nwith lines",
            from_email='"Doe, John" <john@example.com>',
            to=["to@example.com", "Zoë <zoe@bücher.de>"],
            cc=["cc@example.com"],
            headers={"X-Tag": "a\tb", "Reply-To": "reply@example.com"},
        )
        for message in (ours, theirs):
            message.attach_alternative("<p>HTML ✓</p>", "text/html")
            message.attach("a.bin", b"\x00\x01\x02", "application/octet-stream")
            message.attach("notes.txt", "text attachment", "text/plain")
        self.assertSameBytes(ours, theirs)

    def test_single_part(self):
        ours, theirs = _messages(subject="Hi", body="Just text", from_email="a@example.com", to=["b@example.com"])
        self.assertSameBytes(ours, theirs)

    def test_every_multipart_gets_a_distinct_boundary(self):
        ours, _theirs = _messages(subject="S", body="text", from_email="a@example.com", to=["b@example.com"])
        ours.attach_alternative("<b>x</b>", "text/html")
        ours.attach("x.txt", "x", "text/plain")
        boundaries = [part.get_boundary() for part in ours.message().walk() if part.is_multipart()]
        self.assertEqual(len(boundaries), 2)
        self.assertEqual(len(set(boundaries)), 2)
        self.assertNotEqual(boundaries, [part.get_boundary() for part in ours.message().walk() if part.is_multipart()])
