"""Nothing gets in, nothing is lost (issue 10, 2): properties over every enqueue path.

Hypothesis draws ordinary and hostile values for every argument of every way
into the queue: ``mail.send``, ``mail.send_many``, the queueing backend (Django's
``send_mail``, ``EmailMessage.send()``, ``EmailMultiAlternatives`` with
alternatives and attachments, ``mail_admins`` and ``mail_managers``, a message
with queue options or a configured backend), our Django-style helpers,
``post_office.utils.send_mail`` and ``TemplatedEmailMessage``.

The property, for each call: it either returns and every row it stored is
well-formed when read back (the row loads, every address parses, every header
text passes ``header_break``, every value fits its column, no NUL or lone
surrogate, and the message builds with ``Email.email_message()`` and
serialises), or it raises a ``PostOfficeError`` that is also a ``ValueError``
or ``ValidationError`` and leaves no Email, Attachment or Log row behind (the
call runs inside the example's transaction, which it does not commit). Where
Django's own API refuses an argument before the queue is reached (no frame of
``post_office`` in the traceback), that refusal is Django's and is allowed.

The budget is fixed and derandomised (tests/conftest.py), so SQLite,
PostgreSQL and MariaDB runs try the same inputs.
"""

from __future__ import annotations

import datetime
import decimal
import io
import math
import os
import traceback
from collections.abc import Callable
from email.mime.text import MIMEText
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import models, transaction
from django.test import TestCase as DjangoTestCase
from django.test import override_settings
from hypothesis import event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

import post_office
from post_office import mail, queue_options, utils
from post_office.backends import EmailBackend
from post_office.choices import PRIORITY
from post_office.compat import DJANGO_61
from post_office.exceptions import (
    InvalidAddress,
    InvalidArgument,
    InvalidAttachment,
    InvalidContext,
    InvalidEmail,
    InvalidHeader,
    PostOfficeError,
    TemplateRenderError,
    TemplateSyntaxInvalid,
)
from post_office.message.wire import serialize
from post_office.models import Attachment, Email, EmailTemplate, Log
from post_office.templated import TemplatedEmailMessage
from post_office.validation import HEADER_BREAKS, header_break, parse_address

from .helpers import queueing

PACKAGE_DIR = os.path.dirname(os.path.abspath(post_office.__file__))

# -- values --------------------------------------------------------------------


class BrokenStr:
    """An object whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("broken __str__")


class BrokenRepr(BrokenStr):
    """An object whose ``str()`` and ``repr()`` both raise."""

    def __repr__(self) -> str:
        raise RuntimeError("broken __repr__")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # How hypothesis shows a failing example (it cannot call repr()).
        printer.text("BrokenRepr()")


#: Characters that break naive code: every header line break, NUL, lone surrogates,
#: non-BMP characters, template syntax, address punctuation, invisible characters.
HOSTILE_CHARS = [
    *HEADER_BREAKS,
    "\ud800",
    "\udfff",
    "\U0001f600",
    "\U0010fffd",
    "é",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "<",
    ">",
    ",",
    ";",
    ":",
    "@",
    '"',
    "\\",
    " ",
    "\t",
    "\x7f",
    "\u200b",
    "\ufeff",
]
#: Lengths on either side of each limit: columns (255, 320, 989), RFC 5321 (254), 5322 (998), header values.
HUGE_LENGTHS = [254, 255, 256, 320, 321, 989, 990, 996, 997, 998, 999, 10_000, 16_384, 16_385, 100_000]

#: Values of the wrong type, hashable ones first (they may be dict keys).
WRONG_HASHABLE = [
    0,
    -1,
    2**70,
    1.5,
    math.nan,
    math.inf,
    True,
    b"bytes",
    ("a@example.com",),
    (("a@example.com",),),
    object(),
    BrokenStr(),
    datetime.date(2024, 1, 1),
    decimal.Decimal("1.5"),
    frozenset({1}),
]
WRONG = [*WRONG_HASHABLE, bytearray(b"x"), [], [[]], [["a@example.com"]], {}, {"a": "b"}, {1, 2}]

# BrokenRepr is built, not sampled: hypothesis shows a sampled_from strategy with repr() of its elements.
wrong = st.one_of(st.sampled_from(WRONG), st.builds(BrokenRepr))
wrong_hashable = st.one_of(st.sampled_from(WRONG_HASHABLE), st.builds(BrokenRepr))


def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    """Any text, hostile characters included (lone surrogates too, which ``st.characters`` leaves out)."""
    return st.lists(st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS)), max_size=max_size).map("".join)


huge = st.builds(
    lambda unit, length: (unit * length)[:length],
    st.sampled_from(["a", "é", "\U0001f600", "a b ", "{{ x }}"]),
    st.sampled_from(HUGE_LENGTHS),
)
#: Ordinary text: no NUL, no lone surrogate, no line break (fits a subject or header).
safe_line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(HEADER_BREAKS)), max_size=30
)
#: Ordinary body text: line breaks allowed.
safe_body = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)
anything = st.one_of(texts(), huge, wrong, st.none())

# -- addresses -----------------------------------------------------------------

GOOD_ADDRESSES = [
    "a@example.com",
    "Zoë <zoe@example.com>",
    '"Doe, John" <john@example.com>',
    "user@bücher.de",
    "x.y+tag@sub.example.org",
    "\U0001f600 <smile@example.com>",
    "Name <x@пример.рф>",
]
good_address = st.sampled_from(GOOD_ADDRESSES)
local_parts = st.one_of(
    st.sampled_from(["a", "x.y", "a+b", "a" * 64, "a" * 65, "a" * 242, "a" * 243, "a" * 1000, "", '"q u"']),
    texts(10),
)
domains = st.one_of(
    st.sampled_from(
        ["example.com", "bücher.de", "a" * 63 + ".com", "a" * 64 + ".com", ("a" * 60 + ".") * 5 + "com", "[127.0.0.1]"]
    ),
    texts(10),
)
bare_address = st.builds("{}@{}".format, local_parts, domains)
address = st.one_of(
    good_address,
    bare_address,
    st.builds("{} <{}>".format, st.one_of(texts(10), huge), st.one_of(good_address, bare_address)),
    st.builds('"{}" <{}>'.format, texts(10), bare_address),
    st.builds("{}, {}".format, good_address, good_address),
    huge,
    texts(),
)
address_list = st.one_of(
    st.lists(address, max_size=3),
    st.tuples(address),
    address,
    st.lists(st.one_of(address, wrong, st.none()), min_size=1, max_size=2),
    wrong,
    st.none(),
)

# -- headers -------------------------------------------------------------------

header_name = st.one_of(
    st.sampled_from(
        [
            "X-Tag",
            "Reply-To",
            "Message-ID",
            "message-id",
            "From",
            "To",
            "Cc",
            "Bcc",
            "Date",
            "Subject",
            "Content-Type",
            "MIME-Version",
            "List-Unsubscribe",
            "X-Ü",
            "",
            "X Tag",
            "X:Tag",
        ]
    ),
    texts(10),
    huge,
    wrong_hashable,
)
header_value = st.one_of(
    safe_line,
    texts(),
    huge,
    good_address,
    st.builds("<{}@example.com>".format, st.one_of(safe_line, huge)),
    st.integers(),
    wrong,
    st.none(),
)
headers = st.one_of(st.dictionaries(header_name, header_value, max_size=3), wrong, st.none())

# -- contexts ------------------------------------------------------------------


def nested(depth: int, kind: str) -> Any:
    """A list or dict nested ``depth`` deep (a RecursionError for naive recursive code)."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


json_leaf = st.one_of(
    texts(),
    huge,
    st.integers(),
    st.sampled_from([2**64, -(2**70), 10**400]),
    st.floats(),
    st.booleans(),
    st.none(),
)
context_value = st.recursive(
    st.one_of(
        json_leaf, st.sampled_from([object(), BrokenStr(), b"bytes", {1}, datetime.date.min]), st.builds(BrokenRepr)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(st.one_of(texts(5), st.integers(), st.none()), children, max_size=3),
    ),
    max_leaves=8,
)
contexts = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["name", "site_name", "x"]), st.one_of(safe_line, st.integers()), max_size=2),
    st.dictionaries(st.one_of(texts(8), wrong_hashable), context_value, max_size=3),
    st.builds(
        lambda depth, kind: {"name": nested(depth, kind)},
        st.sampled_from([50, 990, 5_000, 100_000]),
        st.sampled_from(["list", "dict"]),
    ),
    wrong,
)

# -- templates, priorities, times, languages, backends ----------------------------

#: Stands for the saved EmailTemplate "welcome" (created per test class).
WELCOME_INSTANCE = "<the EmailTemplate 'welcome'>"
GOOD_TEMPLATES = ["welcome", "static", "file:email/welcome.html", "file:email/html_only.html", WELCOME_INSTANCE]
templates = st.one_of(
    st.sampled_from(GOOD_TEMPLATES),
    st.sampled_from(
        [
            "nope",
            "",
            "file:",
            "file:nope.html",
            "file:email/broken.html",
            "file:email/extends_missing.html",
            "file:../settings.py",
            "file:/etc/passwd",
            "file:email/../../settings.py",
            "file:" + "a" * 300,
            "file:" + "a/" * 200 + "x.html",
            "file:" + "a" * 5000 + ".html",
            "a" * 300,
            "welcome\x00",
            "file:email/\x00.html",
            "file:email/\ud800.html",
        ]
    ),
    st.builds("file:{}".format, texts(10)),
    texts(10),
    wrong,
)
priorities = st.one_of(
    st.sampled_from(
        ["low", "medium", "high", "now", "NOW", " high ", "urgent", "", "0", 0, 1, 2, 3, 4, -1, 2**70, 1.0, True]
    ),
    st.sampled_from(list(PRIORITY)),
    wrong,
    st.none(),
)
ZONES = [
    datetime.timezone.utc,
    datetime.timezone(datetime.timedelta(hours=-23, minutes=-59)),
    datetime.timezone(datetime.timedelta(hours=23, minutes=59)),
    ZoneInfo("Pacific/Kiritimati"),
    ZoneInfo("Etc/GMT+12"),
    ZoneInfo("America/New_York"),
]
zones = st.one_of(st.none(), st.sampled_from(ZONES))
datetimes = st.one_of(
    st.datetimes(timezones=zones),
    st.builds(
        lambda moment, zone: moment.replace(tzinfo=zone),
        st.sampled_from([datetime.datetime.min, datetime.datetime.max]),
        zones,
    ),
    st.dates(),
    st.sampled_from([datetime.date.min, datetime.date.max, "2024-01-01", "tomorrow", 1700000000, datetime.time(1)]),
    wrong,
    st.none(),
)
languages = st.one_of(
    st.sampled_from(
        ["", "en", "de", "DE", "pt_BR", "pt-BR", "fr", "xx", "zz-top", " en", "en" + "-x" * 20, "de\x00", "\ud800"]
    ),
    texts(6),
    huge,
    wrong,
    st.none(),
)
backends = st.one_of(
    st.sampled_from(["", "default", "smtp", "nope", "default\n", "a" * 100]), texts(6), wrong, st.none()
)

# -- attachments (content as bytes or file objects: a string would be a path) ------

mimetypes = st.one_of(
    st.none(),
    st.sampled_from(["text/plain", "application/pdf", "image/png", "text/plain; charset=utf-8", "bad", ""]),
    st.builds("{}/{}".format, st.one_of(texts(5), huge), st.one_of(texts(5), huge)),
    texts(10),
    wrong,
)
attachment_names = st.one_of(
    st.sampled_from(["a.txt", "report.pdf", "bild.png", "noext", "", " "]),
    st.builds("{}.txt".format, st.one_of(texts(10), huge)),
    texts(10),
    st.sampled_from(WRONG_HASHABLE),
    st.builds(BrokenRepr),
)
attachment_content = st.one_of(
    st.binary(max_size=64),
    st.builds(io.BytesIO, st.binary(max_size=16)),
    st.builds(ContentFile, st.binary(max_size=16)),
    st.sampled_from([0, None, [], {}, 1.5, object()]),
)
attachment_spec = st.one_of(
    attachment_content,
    st.fixed_dictionaries({"file": attachment_content}, optional={"mimetype": mimetypes, "headers": headers}),
    st.fixed_dictionaries({"mimetype": mimetypes}),
)
attachments = st.one_of(
    st.none(),
    st.dictionaries(attachment_names, attachment_spec, max_size=2),
    st.lists(
        st.one_of(
            st.tuples(attachment_names, attachment_content),
            st.tuples(attachment_names, attachment_content, mimetypes),
            st.tuples(attachment_names),
            wrong,
        ),
        max_size=2,
    ),
    wrong,
)

# -- mail.send's arguments ---------------------------------------------------------

#: Hostile values for each of mail.send's arguments.
HOSTILE = {
    "recipients": address_list,
    "sender": st.one_of(address, wrong, st.none()),
    "template": templates,
    "context": contexts,
    "subject": anything,
    "message": anything,
    "html_message": anything,
    "scheduled_time": datetimes,
    "expires_at": datetimes,
    "headers": headers,
    "priority": priorities,
    "attachments": attachments,
    "render_on_delivery": st.one_of(st.booleans(), st.sampled_from([1, 0, "yes", None, []])),
    "log_level": st.sampled_from([None, 0, 1, 2, -1, "x"]),
    "commit": st.one_of(st.booleans(), st.sampled_from([0, 1, None, "no"])),
    "cc": address_list,
    "bcc": address_list,
    "language": languages,
    "backend": backends,
}

ordinary_headers = st.dictionaries(st.sampled_from(["X-Tag", "X-Other", "Reply-To"]), good_address, max_size=2)
ordinary_attachments = st.dictionaries(
    st.sampled_from(["a.txt", "b.pdf", "Grüße.txt"]), st.binary(max_size=32), max_size=2
)
ordinary_common = {
    "sender": good_address,
    "cc": st.lists(good_address, max_size=2),
    "bcc": st.lists(good_address, max_size=2),
    "headers": ordinary_headers,
    "priority": st.sampled_from(["low", "medium", "high", "now", 0, 1, 2, 3, None]),
    "scheduled_time": st.datetimes(
        min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1), timezones=zones
    ),
    "language": st.sampled_from(["", "en", "de", "pt-BR"]),
    "backend": st.sampled_from(["", "default"]),
    "attachments": ordinary_attachments,
}
ordinary_parts = st.fixed_dictionaries(
    {"recipients": st.lists(good_address, min_size=1, max_size=2)},
    optional={
        **ordinary_common,
        "subject": safe_line,
        "message": safe_body,
        "html_message": safe_body,
        "context": st.dictionaries(st.sampled_from(["name", "x"]), safe_line, max_size=2),
    },
)
ordinary_template = st.fixed_dictionaries(
    {"recipients": st.lists(good_address, min_size=1, max_size=2), "template": st.sampled_from(GOOD_TEMPLATES)},
    optional={
        **ordinary_common,
        "context": st.dictionaries(st.sampled_from(["name", "site_name"]), safe_line, max_size=2),
        "render_on_delivery": st.booleans(),
    },
)


@st.composite
def mixed(draw: Any, ordinary: st.SearchStrategy[dict[str, Any]], hostile: dict[str, Any], at_most: int) -> Any:
    """Ordinary arguments with up to ``at_most`` of them replaced by a hostile value.

    About a third of the examples stay ordinary (and should be queued); the others
    change one to ``at_most`` arguments, so each hostile value meets ordinary ones.
    """
    values = dict(draw(ordinary))
    for name in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=at_most, unique=True)):
        values[name] = draw(hostile[name])
    return values


send_kwargs = mixed(st.one_of(ordinary_parts, ordinary_template), HOSTILE, 3)
send_many_item = st.one_of(
    mixed(st.one_of(ordinary_parts, ordinary_template), HOSTILE, 2),
    st.builds(
        lambda kwargs, extra: {**kwargs, **extra},
        ordinary_parts,
        st.dictionaries(st.sampled_from(["foo", "connection", "to", ""]), anything, min_size=1, max_size=1),
    ),
    wrong,
)

# -- Django messages -------------------------------------------------------------

#: What Django's EmailMessage takes as a list of addresses (it refuses a string or None itself).
message_address_list = st.one_of(
    st.lists(st.one_of(address, wrong), max_size=3), st.tuples(address), st.sampled_from([None, "a@example.com"])
)


def mime_part(filename: Any, text: str) -> Any:
    part = MIMEText(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "plain", "utf-8")
    # A MIME header cannot hold a lone surrogate at all: the email package refuses to build the part.
    safe_name = str(filename).encode("utf-8", "replace").decode()
    part.add_header("Content-Disposition", "attachment", filename=safe_name)
    return part


message_attachment = st.one_of(
    st.tuples(attachment_names, st.one_of(st.binary(max_size=16), safe_body, texts(), huge), mimetypes),
    st.builds(mime_part, st.one_of(texts(10), huge), safe_body),
    st.tuples(attachment_names),
    wrong,
)
message_alternative = st.one_of(
    st.tuples(
        st.one_of(safe_body, texts(), huge, st.binary(max_size=16), wrong),
        st.one_of(st.sampled_from(["text/html", "text/plain", "text/calendar", "text/x-amp-html"]), mimetypes),
    ),
    wrong,
)
ordinary_message = st.fixed_dictionaries(
    {"to": st.lists(good_address, min_size=1, max_size=2)},
    optional={
        "subject": safe_line,
        "body": safe_body,
        "from_email": good_address,
        "cc": st.lists(good_address, max_size=2),
        "bcc": st.lists(good_address, max_size=2),
        "reply_to": st.lists(good_address, max_size=2),
        "headers": ordinary_headers,
        "attachments": st.lists(
            st.tuples(st.sampled_from(["a.txt", "b.ics", "Grüße.txt"]), st.binary(max_size=16), mimetypes), max_size=2
        ),
        "alternatives": st.lists(st.tuples(safe_body, st.sampled_from(["text/html", "text/calendar"])), max_size=2),
    },
)
HOSTILE_MESSAGE = {
    "to": message_address_list,
    "cc": message_address_list,
    "bcc": message_address_list,
    "reply_to": message_address_list,
    "subject": anything,
    "body": anything,
    "from_email": st.one_of(address, wrong, st.none()),
    "headers": headers,
    "attachments": st.lists(message_attachment, min_size=1, max_size=2),
    "alternatives": st.lists(message_alternative, min_size=1, max_size=2),
}
message_kwargs = mixed(ordinary_message, HOSTILE_MESSAGE, 2)
#: Queue options (queue_options(), TemplatedEmailMessage) and the backend's own options.
QUEUE_OPTIONS = {
    "priority": priorities,
    "scheduled_time": datetimes,
    "expires_at": datetimes,
    "backend": backends,
    "language": languages,
}
queue_option_values = mixed(st.just({}), QUEUE_OPTIONS, 2)
backend_options = mixed(st.just({}), {"priority": priorities, "backend": backends}, 2)

# -- helpers' arguments --------------------------------------------------------------

ordinary_helper = st.fixed_dictionaries(
    {
        "subject": safe_line,
        "message": safe_body,
        "from_email": st.one_of(good_address, st.none()),
        "recipient_list": st.lists(good_address, min_size=1, max_size=2),
    },
    optional={
        "html_message": safe_body,
        "priority": st.sampled_from(["low", "high", 2, None]),
        "headers": ordinary_headers,
        "scheduled_time": ordinary_common["scheduled_time"],
    },
)
HOSTILE_HELPER = {
    "subject": anything,
    "message": anything,
    "html_message": anything,
    "from_email": st.one_of(address, wrong, st.none()),
    "recipient_list": address_list,
    "priority": priorities,
    "headers": headers,
    "scheduled_time": datetimes,
}
helper_kwargs = mixed(ordinary_helper, HOSTILE_HELPER, 2)
datatuple_item = st.one_of(
    st.builds(
        lambda kwargs: (kwargs["subject"], kwargs["message"], kwargs["from_email"], kwargs["recipient_list"]),
        helper_kwargs,
    ),
    st.tuples(safe_line),
    texts(4),
    wrong,
)

# -- the property ----------------------------------------------------------------

#: Every CharField of Email and its length, read from the model.
EMAIL_COLUMNS = {
    field.name: field.max_length
    for field in Email._meta.concrete_fields
    if isinstance(field, models.CharField) and field.max_length
}
ATTACHMENT_COLUMNS = {
    field.name: field.max_length
    for field in Attachment._meta.concrete_fields
    if isinstance(field, models.CharField) and field.max_length
}


def entered_post_office(error: BaseException) -> bool:
    """Whether the traceback of ``error`` passed through this package's code."""
    return any(frame.filename.startswith(PACKAGE_DIR) for frame in traceback.extract_tb(error.__traceback__))


def storable_text(value: Any, where: str) -> None:
    """Text every database stores: no NUL, no lone surrogate."""
    assert isinstance(value, str), f"{where} is a {type(value).__name__}"
    assert "\x00" not in value, f"{where} holds NUL"
    value.encode("utf-8")  # a lone surrogate raises


def json_texts(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            storable_text(key, f"{where} key")
            json_texts(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            json_texts(item, f"{where}[{index}]")
    elif isinstance(value, str):
        storable_text(value, where)
    else:
        assert value is None or isinstance(value, (int, float, bool)), f"{where} is a {type(value).__name__}"


class PropertyTestCase(TestCase):
    """Each example runs in its own transaction, rolled back after it (hypothesis.extra.django)."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.welcome = EmailTemplate.objects.create(
            name="welcome", subject="Hi {{ name }}", content="Hello {{ name }}!", html_content="<p>{{ name }}</p>"
        )
        EmailTemplate.objects.create(
            name="welcome", language="de", default_template=cls.welcome, subject="Hallo {{ name }}", content="Hallo"
        )
        EmailTemplate.objects.create(name="static", subject="Static", content="No variables")

    def resolve(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("template") == WELCOME_INSTANCE:
            return {**kwargs, "template": EmailTemplate.objects.get(pk=self.welcome.pk)}
        return kwargs

    def rows(self) -> tuple[int, ...]:
        return (
            Email.objects.count(),
            Attachment.objects.count(),
            Attachment.emails.through.objects.count(),
            Log.objects.count(),
        )

    def attempt(self, call: Callable[[], Any], *, django_api: bool = False) -> tuple[bool, Any]:
        """Run ``call``; return (True, result), or (False, error) for an error of ours that stored nothing.

        Any other exception fails the property. With ``django_api``, Django
        refusing an argument before this package is reached is allowed too.
        """
        before = self.rows()
        try:
            result = call()
        except PostOfficeError as error:
            event(f"refused: {type(error).__name__}")
            self.assertIsInstance(error, (ValueError, ValidationError))
            self.assertTrue(str(error))
            repr(error)
            if isinstance(error, InvalidEmail):
                self.assertTrue(error.field)
            self.assertEqual(self.rows(), before, f"{error!r} left rows behind")
            return False, error
        except Exception as error:
            if django_api and not entered_post_office(error):
                event(f"refused by Django itself: {type(error).__name__}")
                self.assertEqual(self.rows(), before)
                return False, error
            error.add_note(f"post_office let {type(error).__name__} escape: {error}")
            raise
        event("returned")
        return True, result

    def assert_queued(self, before: int, count: int) -> None:
        """``count`` new emails were stored, each well-formed."""
        emails = list(Email.objects.order_by("-pk")[:count]) if count else []
        self.assertEqual(Email.objects.count(), before + count)
        for email in emails:
            self.assert_well_formed(Email.objects.get(pk=email.pk))

    def assert_well_formed(self, email: Email, stored: bool = True) -> None:
        for name, limit in EMAIL_COLUMNS.items():
            value = getattr(email, name)
            if value is not None:
                storable_text(value, name)
                self.assertLessEqual(len(value), limit, name)
        self.assertTrue(email.to or email.cc or email.bcc)
        for address_text in [email.from_email, *email.to, *email.cc, *email.bcc]:
            self.assertEqual(parse_address(address_text, "address"), address_text)
        header_texts = [email.subject, email.from_email, email.message_id or ""]
        for name, value in (email.headers or {}).items():
            storable_text(name, "header name")
            storable_text(value, f"header {name!r}")
            header_texts += [name, value]
        for text in header_texts:
            self.assertIsNone(header_break(text), repr(text))
        storable_text(email.message, "message")
        storable_text(email.html_message, "html_message")
        json_texts(email.alternatives, "alternatives")
        json_texts(email.context, "context")
        self.assertIn(email.priority, PRIORITY.values)
        for moment in (email.scheduled_time, email.expires_at):
            self.assertTrue(moment is None or moment.tzinfo is not None)
        message = email.email_message()
        message.message().as_bytes()
        if not stored:
            return
        loaded = list(email.attachments.all())
        for attachment in loaded:
            for name, limit in ATTACHMENT_COLUMNS.items():
                self.assertLessEqual(len(getattr(attachment, name)), limit, name)
            self.assertIsNone(header_break(attachment.name))
            self.assertIsNone(header_break(attachment.mimetype))
            json_texts(attachment.headers, "attachment headers")
            with attachment.file.open("rb") as handle:
                handle.read()
        email.loaded_attachments = loaded
        wire = serialize(email)
        if wire is not None:
            self.assertIsInstance(wire.data, bytes)


def examples(factor: float = 1) -> hypothesis_settings:
    """This property's share of the budget: ``factor`` times the loaded profile's (tests/conftest.py)."""
    return hypothesis_settings(max_examples=max(1, int(hypothesis_settings.default.max_examples * factor)))


class SendPropertyTest(PropertyTestCase):
    @examples(4)
    @given(kwargs=send_kwargs, zone=st.sampled_from(["UTC", "Pacific/Kiritimati", "Etc/GMT+12"]))
    # Found on Django 6.1: a Subject header, and an empty header whose name fills the line.
    @example(kwargs={"recipients": ["a@example.com"], "headers": {"Subject": ""}}, zone="UTC")
    @example(kwargs={"recipients": ["a@example.com"], "headers": {"a" * 254: ""}}, zone="UTC")
    def test_send(self, kwargs, zone):
        kwargs = self.resolve(kwargs)
        before = Email.objects.count()
        with override_settings(TIME_ZONE=zone):
            ok, result = self.attempt(lambda: mail.send(**kwargs))
            if not ok:
                return
            if kwargs.get("commit", True):
                self.assertIsNotNone(result.pk)
                self.assert_queued(before, 1)
            else:
                self.assertIsNone(result.pk)
                self.assertEqual(Email.objects.count(), before)
                self.assert_well_formed(result, stored=False)

    @examples(2)
    @given(kwargs_list=st.one_of(st.lists(send_many_item, max_size=3), st.tuples(send_kwargs), wrong, st.none()))
    def test_send_many(self, kwargs_list):
        if isinstance(kwargs_list, (list, tuple)):
            kwargs_list = [self.resolve(item) if isinstance(item, dict) else item for item in kwargs_list]
        before = Email.objects.count()
        ok, result = self.attempt(lambda: mail.send_many(kwargs_list))
        if ok:
            self.assertEqual(len(result), len(kwargs_list))
            self.assert_queued(before, len(result))


@queueing()
class BackendPropertyTest(PropertyTestCase):
    @examples(3)
    @given(
        kwargs=message_kwargs,
        html=st.booleans(),
        options=st.one_of(st.none(), queue_option_values),
        connection_options=st.one_of(st.none(), backend_options),
    )
    def test_email_message_send(self, kwargs, html, options, connection_options):
        """EmailMultiAlternatives (alternatives, attachments), with queue options or a configured backend."""
        before = Email.objects.count()

        def call() -> int:
            alternatives = kwargs.pop("alternatives", [])
            connection = EmailBackend(**connection_options) if connection_options is not None else None
            message = EmailMultiAlternatives(connection=connection, **kwargs)
            for content, mimetype in alternatives:
                message.attach_alternative(content, mimetype)
            if html:
                message.content_subtype = "html"
            if options is not None:
                queue_options(message, **options)
            return message.send()

        ok, count = self.attempt(call, django_api=True)
        if ok:
            self.assert_queued(before, count)

    @examples()
    @given(kwargs=helper_kwargs, fail_silently=st.booleans())
    def test_django_send_mail(self, kwargs, fail_silently):
        before = Email.objects.count()
        ok, count = self.attempt(
            lambda: django_mail.send_mail(
                kwargs["subject"],
                kwargs["message"],
                kwargs["from_email"],
                kwargs["recipient_list"],
                fail_silently=fail_silently,
                html_message=kwargs.get("html_message"),
            ),
            django_api=True,
        )
        if ok:
            self.assert_queued(before, count)

    @examples()
    @given(
        function=st.sampled_from([django_mail.mail_admins, django_mail.mail_managers]),
        kwargs=helper_kwargs,
        people=st.one_of(st.none(), st.lists(st.tuples(texts(5), address), min_size=1, max_size=2)),
    )
    def test_django_mail_admins_and_managers(self, function, kwargs, people):
        before = Email.objects.count()
        setting = {}
        if people is not None:
            listed = [pair[1] for pair in people] if DJANGO_61 else people
            setting = {"ADMINS": listed, "MANAGERS": listed}
        with override_settings(**setting):
            ok, _result = self.attempt(
                lambda: function(kwargs["subject"], kwargs["message"], html_message=kwargs.get("html_message")),
                django_api=True,
            )
        if ok:
            self.assert_queued(before, Email.objects.count() - before)

    @examples()
    @given(
        kwargs=mixed(
            st.fixed_dictionaries(
                {
                    "template_name": st.sampled_from(["email/welcome.html", "email/html_only.html"]),
                    "to": st.lists(good_address, min_size=1, max_size=2),
                    "context": st.dictionaries(st.sampled_from(["name", "site_name"]), safe_line, max_size=2),
                },
            ),
            {"template_name": templates, "to": message_address_list, "context": contexts, **QUEUE_OPTIONS},
            2,
        )
    )
    def test_templated_email_message(self, kwargs):
        before = Email.objects.count()
        to = kwargs.pop("to")

        def call() -> int:
            TemplatedEmailMessage(**kwargs).send(to)
            return 1

        ok, _result = self.attempt(call, django_api=True)
        if ok:
            self.assert_queued(before, Email.objects.count() - before)


class HelperPropertyTest(PropertyTestCase):
    @examples(3)
    @given(helper=st.sampled_from(["mail.send_mail", "send_html_mail", "utils.send_mail"]), kwargs=helper_kwargs)
    def test_send_mail_helpers(self, helper, kwargs):
        """post_office.mail.send_mail and send_html_mail, post_office.utils.send_mail."""
        before = Email.objects.count()
        common = [kwargs["subject"], kwargs["message"]]
        where = [kwargs["from_email"], kwargs["recipient_list"]]
        html, priority, headers = kwargs.get("html_message", ""), kwargs.get("priority"), kwargs.get("headers")
        calls = {
            "mail.send_mail": lambda: mail.send_mail(*common, *where, html_message=html, priority=priority),
            "send_html_mail": lambda: mail.send_html_mail(*common, html, *where, priority=priority, headers=headers),
            "utils.send_mail": lambda: utils.send_mail(
                *common,
                *where,
                html_message=html,
                scheduled_time=kwargs.get("scheduled_time"),
                headers=headers,
                priority=priority,
            ),
        }
        ok, result = self.attempt(calls[helper])
        if ok:
            self.assert_queued(before, len(result) if isinstance(result, list) else result)

    @examples()
    @given(datatuple=st.one_of(st.lists(datatuple_item, max_size=3), wrong), priority=priorities)
    def test_send_mass_mail(self, datatuple, priority):
        before = Email.objects.count()
        ok, count = self.attempt(lambda: mail.send_mass_mail(datatuple, priority=priority))
        if ok:
            self.assert_queued(before, count)

    @examples()
    @given(function=st.sampled_from([mail.mail_admins, mail.mail_managers]), kwargs=helper_kwargs)
    def test_mail_admins_helpers(self, function, kwargs):
        before = Email.objects.count()
        ok, count = self.attempt(
            lambda: function(
                kwargs["subject"],
                kwargs["message"],
                html_message=kwargs.get("html_message"),
                priority=kwargs.get("priority"),
            )
        )
        if ok:
            self.assert_queued(before, count)


# -- the three named cases, on every path ---------------------------------------------------

LONG_SUBJECT = "s" * 100_000
LONG_ADDRESS = "a" * 988 + "@example.com"
LONG_HEADER_NAME = "X" * 10_000
TO = ["to@example.com"]
SENDER = "from@example.com"


@queueing()
class LengthLimitsTest(DjangoTestCase):
    """A 100,000-character subject, a 1,000-character address and a 10,000-character header name."""

    def assert_refused(self, call: Callable[[], Any], error_class: type[InvalidEmail], field: str, text: str):
        before = (Email.objects.count(), Attachment.objects.count(), Log.objects.count())
        with self.assertRaises(error_class) as caught:
            call()
        self.assertTrue(caught.exception.field.endswith(field), caught.exception.field)
        self.assertIn(text, str(caught.exception))
        self.assertLess(len(str(caught.exception)), 500)
        self.assertEqual((Email.objects.count(), Attachment.objects.count(), Log.objects.count()), before)

    def paths(self, subject: str = "S", to: list[str] = TO, headers: dict[str, str] | None = None):
        """Every path that can express these arguments: name -> call."""
        calls: dict[str, Callable[[], Any]] = {
            "send": lambda: mail.send(to, SENDER, subject=subject, message="B", headers=headers),
            "send_many": lambda: mail.send_many([{"recipients": to, "subject": subject, "headers": headers}]),
            "backend": lambda: EmailMessage(subject, "B", SENDER, to, headers=headers).send(),
            "multi_alternatives": lambda: EmailMultiAlternatives(
                subject, "B", SENDER, to, headers=headers, alternatives=[("<p>B</p>", "text/html")]
            ).send(),
            "utils.send_mail": lambda: utils.send_mail(subject, "B", SENDER, to, headers=headers),
            "send_html_mail": lambda: mail.send_html_mail(subject, "B", "<p>B</p>", SENDER, to, headers=headers),
        }
        if headers is None:
            calls.update(
                {
                    "django.send_mail": lambda: django_mail.send_mail(subject, "B", SENDER, to),
                    "mail.send_mail": lambda: mail.send_mail(subject, "B", SENDER, to),
                    "send_mass_mail": lambda: mail.send_mass_mail([(subject, "B", SENDER, to)]),
                    "django.send_mass_mail": lambda: django_mail.send_mass_mail([(subject, "B", SENDER, to)]),
                }
            )
        return calls

    def test_a_100000_character_subject_is_refused_on_every_path(self):
        limit = Email._meta.get_field("subject").max_length
        expected = {name: (call, 100_000) for name, call in self.paths(subject=LONG_SUBJECT).items()}
        # The helpers for ADMINS and MANAGERS put EMAIL_SUBJECT_PREFIX before the subject.
        prefixed = len(django_settings.EMAIL_SUBJECT_PREFIX) + 100_000
        expected["mail_admins"] = (lambda: mail.mail_admins(LONG_SUBJECT, "B"), prefixed)
        expected["django.mail_admins"] = (lambda: django_mail.mail_admins(LONG_SUBJECT, "B"), prefixed)
        expected["django.mail_managers"] = (lambda: django_mail.mail_managers(LONG_SUBJECT, "B"), prefixed)
        for name, (call, length) in expected.items():
            with self.subTest(path=name):
                self.assert_refused(
                    call, InvalidHeader, "subject", f"is {length} characters long; the limit is {limit}"
                )

    def test_the_longest_subject_is_kept(self):
        limit = Email._meta.get_field("subject").max_length
        email = mail.send(TO, SENDER, subject="s" * limit, message="B")
        self.assertEqual(len(Email.objects.get(pk=email.pk).subject), limit)

    def test_a_1000_character_address_is_refused_on_every_path(self):
        self.assertEqual(len(LONG_ADDRESS), 1000)
        paths = self.paths(to=[LONG_ADDRESS])
        paths["sender"] = lambda: mail.send(TO, LONG_ADDRESS, subject="S", message="B")
        paths["cc"] = lambda: mail.send(TO, SENDER, subject="S", message="B", cc=[LONG_ADDRESS])
        paths["bcc"] = lambda: EmailMessage("S", "B", SENDER, TO, bcc=[LONG_ADDRESS]).send()
        paths["django.from_email"] = lambda: django_mail.send_mail("S", "B", LONG_ADDRESS, TO)
        paths["templated"] = lambda: TemplatedEmailMessage(template_name="email/welcome.html").send([LONG_ADDRESS])
        admins = [LONG_ADDRESS] if DJANGO_61 else [("Admin", LONG_ADDRESS)]
        with override_settings(ADMINS=admins):
            paths["mail_admins"] = lambda: mail.mail_admins("S", "B")
            for name, call in paths.items():
                with self.subTest(path=name):
                    self.assert_refused(
                        call, InvalidAddress, "", "is 1000 characters long; an address may have at most 254"
                    )

    def test_a_long_display_name_is_refused_where_the_column_ends(self):
        limit = Email._meta.get_field("from_email").max_length
        sender = "N" * 400 + " <s@example.com>"
        self.assert_refused(
            lambda: mail.send(TO, sender, subject="S", message="B"),
            InvalidAddress,
            "sender",
            f"is {len(sender)} characters long; the limit is {limit}",
        )
        # A recipient is stored as JSON: only RFC 5322's line length bounds it.
        mail.send(["N" * 400 + " <to@example.com>"], SENDER, subject="S", message="B")

    def test_a_10000_character_header_name_is_refused_on_every_path(self):
        paths = self.paths(headers={LONG_HEADER_NAME: "v"})
        paths["attachment headers"] = lambda: mail.send(
            TO,
            SENDER,
            subject="S",
            message="B",
            attachments={"a.txt": {"file": b"x", "headers": {LONG_HEADER_NAME: "v"}}},
        )
        for name, call in paths.items():
            with self.subTest(path=name):
                self.assert_refused(call, InvalidHeader, "name", "is 10000 characters long; the limit is 996")


# -- what the properties found, one input each -------------------------------------------------


def _message(**kwargs: Any) -> EmailMultiAlternatives:
    kwargs.setdefault("to", TO)
    return EmailMultiAlternatives("S", "B", SENDER, **kwargs)


def _with_alternative(content: Any, mimetype: str) -> EmailMultiAlternatives:
    message = _message()
    message.alternatives.append((content, mimetype))
    return message


def _to_set_later(value: Any) -> EmailMessage:
    message = EmailMessage("S", "B", SENDER, TO)
    message.to = value
    return message


def _send(**kwargs: Any) -> Email:
    kwargs.setdefault("recipients", TO)
    kwargs.setdefault("sender", SENDER)
    if "template" not in kwargs:
        kwargs.setdefault("subject", "S")
    return mail.send(**kwargs)


#: Each input the properties (or the column checks) found, and the error it gets now; None: it is queued now.
#: The report of issue 10 gives each one's old behaviour.
FOUND: list[tuple[str, Callable[[], Any], type[Exception] | None]] = [
    ("file template name too long", lambda: _send(template="file:" + "a" * 300), InvalidArgument),
    ("value whose repr() raises", lambda: _send(subject=BrokenRepr()), InvalidArgument),
    ("attachment name whose repr() raises", lambda: _send(attachments={BrokenRepr(): b"x"}), InvalidAttachment),
    ("send_many(None)", lambda: mail.send_many(None), InvalidArgument),
    ("send_many with a non-string key", lambda: mail.send_many([{"foo": 1, 2: 3}]), InvalidArgument),
    ("send_mass_mail(None)", lambda: mail.send_mass_mail(None), InvalidArgument),
    ("syntax error in a subject with context", lambda: _send(subject="{% if %}", context={}), TemplateSyntaxInvalid),
    (
        "context value whose str() raises",
        lambda: _send(message="{{ x }}", context={"x": BrokenStr()}),
        TemplateRenderError,
    ),
    (
        "deep context rendered",
        lambda: _send(message="{{ x }}", context={"x": nested(5000, "list")}),
        TemplateRenderError,
    ),
    (
        "deep context stored",
        lambda: _send(template="welcome", render_on_delivery=True, context={"x": nested(5000, "dict")}),
        InvalidContext,
    ),
    (
        "integer beyond 64 bits stored",
        lambda: _send(template="welcome", render_on_delivery=True, context={"x": 2**70}),
        InvalidContext,
    ),
    (
        "NUL in a stored context",
        lambda: _send(template="welcome", render_on_delivery=True, context={"x": "a\x00b"}),
        InvalidContext,
    ),
    ("NUL in the body", lambda: _send(message="a\x00b"), InvalidArgument),
    ("lone surrogate in the body", lambda: _send(html_message="\ud800"), InvalidArgument),
    ("lone surrogate in the subject", lambda: _send(subject="\udfff"), InvalidHeader),
    ("body that is not text", lambda: _send(message=5), InvalidArgument),
    ("100,000-character subject", lambda: _send(subject=LONG_SUBJECT), InvalidHeader),
    (
        "address of 312 characters",
        lambda: _send(recipients=["a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com"]),
        InvalidAddress,
    ),
    ("sender beyond its column", lambda: _send(sender="N" * 400 + " <s@example.com>"), InvalidAddress),
    ("domain IDNA refuses", lambda: _send(recipients=["a@x\ufffdy.com"]), InvalidAddress),
    ("10,000-character header name", lambda: _send(headers={LONG_HEADER_NAME: "v"}), InvalidHeader),
    ("non-ASCII header name", lambda: _send(headers={"X-Ü": "v"}), InvalidHeader),
    ("tab in a header name", lambda: _send(headers={"X\tTag": "v"}), InvalidHeader),
    ("lone surrogate in a header", lambda: _send(headers={"X-Tag": "\ud800"}), InvalidHeader),
    ("unfoldable header value", lambda: _send(headers={"X-Long": "x" * 5000}), InvalidHeader),
    ("Reply-To that is no address", lambda: _send(headers={"Reply-To": "not an address"}), InvalidAddress),
    ("Message-ID beyond its column", lambda: _send(headers={"Message-ID": f"<{'a' * 300}@x>"}), InvalidHeader),
    (
        "offset beyond PostgreSQL's 15:59",
        lambda: _send(scheduled_time=datetime.datetime(2030, 1, 1, tzinfo=ZONES[1])),
        None,
    ),
    ("log level that is not one", lambda: _send(log_level="x", priority="now"), InvalidArgument),
    ("template that is not a name", lambda: _send(template=0), InvalidArgument),
    ("NUL in a template name", lambda: _send(template="welcome\x00"), InvalidArgument),
    ("unsaved EmailTemplate", lambda: _send(template=EmailTemplate(name="unsaved")), InvalidArgument),
    ("utils.send_mail to a number", lambda: utils.send_mail("S", "B", SENDER, 5), InvalidArgument),
    ("utils.send_mail to one string", lambda: utils.send_mail("S", "B", SENDER, "a@example.com"), None),
    ("mail_admins subject whose str() raises", lambda: mail.mail_admins(BrokenStr(), "B"), InvalidArgument),
    ("message header whose str() raises", lambda: _message(headers={"X": BrokenStr()}).send(), InvalidHeader),
    ("alternative that is not UTF-8", lambda: _with_alternative(b"\xff", "text/html").send(), InvalidArgument),
    ("alternative of no MIME type", lambda: _with_alternative("x", "bad").send(), InvalidArgument),
    (
        "attachment content of no type",
        lambda: _message(attachments=[("a.txt", 5, "text/plain")]).send(),
        InvalidAttachment,
    ),
    (
        "message.to set to a string",
        lambda: EmailBackend().send_messages([_to_set_later("a@example.com")]),
        InvalidArgument,
    ),
    ("message.to set to a tuple", lambda: EmailBackend().send_messages([_to_set_later(("a@example.com",))]), None),
    (
        "TemplatedEmailMessage to None",
        lambda: TemplatedEmailMessage(template_name="email/welcome.html").send(None),
        InvalidArgument,
    ),
    (
        "TemplatedEmailMessage to a tuple",
        lambda: TemplatedEmailMessage(template_name="email/welcome.html").send(("a@example.com",)),
        None,
    ),
    (
        "TemplatedEmailMessage context not a dict",
        lambda: TemplatedEmailMessage(template_name="email/welcome.html", context=["x"]).send(TO),
        InvalidArgument,
    ),
]


@queueing()
class FoundTest(DjangoTestCase):
    """Every input in FOUND is queued or refused with our error, storing nothing."""

    @classmethod
    def setUpTestData(cls) -> None:
        EmailTemplate.objects.create(name="welcome", subject="Hi {{ name }}", content="Hello")

    def test_each_input_found_gets_its_answer(self):
        for name, call, expected in FOUND:
            with self.subTest(name):
                before = Email.objects.count()
                if expected is None:
                    call()
                    self.assertGreater(Email.objects.count(), before)
                    continue
                with transaction.atomic():
                    with self.assertRaises(expected) as raised:
                        call()
                self.assertIsInstance(raised.exception, (ValueError, ValidationError))
                self.assertEqual(Email.objects.count(), before)
