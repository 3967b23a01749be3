"""The validation matrix (issue 2, section 5): every bad input on every entry point.

Each case is written once in ``send()``'s vocabulary; each path (``mail.send``,
``mail.send_many``, the queueing backend, the helpers) translates it into its
own call. A case applies to a path when the path can express every argument the
case uses, so the matrix of (case, path) pairs builds itself and each pair is
generated as its own test method: ``test_<case>__<path>``.

Every rejection asserts the exact exception class, that ``str(error)`` names the
field (with the item index on the batch paths) and the bad value, and that no
Email, Attachment or Log row was stored.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.test import SimpleTestCase, TestCase
from django.utils import timezone
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from post_office import mail, validation
from post_office.backends import EmailBackend
from post_office.exceptions import (
    InvalidAddress,
    InvalidArgument,
    InvalidContext,
    InvalidEmail,
    InvalidHeader,
    InvalidPriority,
    InvalidSchedule,
    MissingSender,
    TemplateConflict,
    UnknownBackend,
)
from post_office.models import Attachment, Email, EmailTemplate, Log
from post_office.rendering.lookup import MissingEmailTemplate
from post_office.validation import HEADER_BREAKS

from .helpers import queueing

SENDER = "from@example.com"
TO = ["to@example.com"]
# Valid addresses that naive comma splitting or ASCII-only checks would break.
DISPLAY_NAME_TO = [
    '"Doe, John" <j@example.com>',
    "user@bücher.de",
    "Name <x@пример.рф>",
]
DISPLAY_NAME_CC = ['"Roe, Jane" <jane@bücher.de>']
DISPLAY_NAME_SENDER = '"Shop, Inc." <shop@bücher.de>'
TEMPLATE_KEYS = {"template", "context", "language", "render_on_delivery"}
NOT_SET = object()


# -- paths -------------------------------------------------------------------


def _base(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A valid send() call with the case's arguments on top."""
    if "template" in overrides:
        kwargs: dict[str, Any] = {"recipients": TO, "sender": SENDER}
    else:
        kwargs = {"recipients": TO, "sender": SENDER, "subject": "Hello", "message": "Body"}
    kwargs.update(overrides)
    return kwargs


def _good_item(number: int) -> dict[str, Any]:
    # Good neighbours carry attachments, so "nothing stored" covers Attachment rows too.
    return {
        "recipients": [f"good{number}@example.com"],
        "sender": SENDER,
        "subject": f"Good {number}",
        "message": "Fine",
        "attachments": {f"good{number}.txt": b"good content"},
    }


def _message(kwargs: Mapping[str, Any], attach: bool = True) -> EmailMultiAlternatives:
    """A Django message carrying the same fields as a send() call."""
    message = EmailMultiAlternatives(
        subject=kwargs.get("subject", ""),
        body=kwargs.get("message", ""),
        from_email=kwargs.get("sender"),
        to=kwargs["recipients"],
        cc=kwargs.get("cc"),
        bcc=kwargs.get("bcc"),
        headers=kwargs.get("headers"),
    )
    if kwargs.get("html_message"):
        message.attach_alternative(kwargs["html_message"], "text/html")
    if attach:
        message.attach("note.txt", b"attached", "text/plain")
    return message


@dataclass(frozen=True)
class Path:
    name: str
    keys: frozenset[str]
    run: Callable[[TestCase, dict[str, Any]], Any]
    # How the error names a field on this path (batch paths add the item index).
    label: Callable[[Mapping[str, Any]], str] = lambda overrides: ""
    string_recipients: bool = True

    def applies(self, overrides: Mapping[str, Any]) -> bool:
        if not set(overrides) <= self.keys:
            return False
        return self.string_recipients or not isinstance(overrides.get("recipients"), str)


def _run_send(test: TestCase, kwargs: dict[str, Any]) -> Any:
    return mail.send(attachments={"note.txt": b"attached"}, **kwargs)


def _run_send_many(test: TestCase, kwargs: dict[str, Any]) -> Any:
    return mail.send_many([_good_item(0), {**kwargs, "attachments": {"note.txt": b"attached"}}, _good_item(2)])


def _backend_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs.pop(key) for key in ("priority", "backend") if key in kwargs}


def _run_backend(test: TestCase, kwargs: dict[str, Any]) -> Any:
    options = _backend_options(kwargs)
    message = _message(kwargs)
    if options:
        # priority and backend are the backend's OPTIONS (a MAILERS entry on 6.1).
        return EmailBackend(**options).send_messages([message])
    with queueing():
        return message.send()


def _backend_label(overrides: Mapping[str, Any]) -> str:
    # Bad OPTIONS are refused when the backend is created, before any message.
    return "" if {"priority", "backend"} & set(overrides) else "messages[0]."


def _run_backend_batch(test: TestCase, kwargs: dict[str, Any]) -> Any:
    with queueing():
        return EmailBackend().send_messages([_message(_good_item(0)), _message(kwargs), _message(_good_item(2))])


def _run_django_send_mail(test: TestCase, kwargs: dict[str, Any]) -> Any:
    with queueing():
        return django_mail.send_mail(
            kwargs.get("subject", ""),
            kwargs.get("message", ""),
            kwargs.get("sender"),
            kwargs["recipients"],
            html_message=kwargs.get("html_message"),
        )


def _run_send_mail(test: TestCase, kwargs: dict[str, Any]) -> Any:
    return mail.send_mail(
        kwargs.get("subject", ""),
        kwargs.get("message", ""),
        kwargs.get("sender"),
        kwargs["recipients"],
        html_message=kwargs.get("html_message"),
        priority=kwargs.get("priority"),
    )


def _run_send_html_mail(test: TestCase, kwargs: dict[str, Any]) -> Any:
    return mail.send_html_mail(
        kwargs.get("subject", ""),
        kwargs.get("message", ""),
        kwargs.get("html_message", "<p>Body</p>"),
        kwargs.get("sender"),
        kwargs["recipients"],
        priority=kwargs.get("priority"),
        headers=kwargs.get("headers"),
    )


def _run_send_mass_mail(test: TestCase, kwargs: dict[str, Any]) -> Any:
    def row(item: Mapping[str, Any]) -> tuple[Any, ...]:
        return (item.get("subject", ""), item.get("message", ""), item.get("sender"), item.get("recipients"))

    return mail.send_mass_mail([row(_good_item(0)), row(kwargs), row(_good_item(2))], priority=kwargs.get("priority"))


def _mass_mail_label(overrides: Mapping[str, Any]) -> str:
    # priority applies to every tuple, so the first one is the one refused.
    return "datatuple[0]." if "priority" in overrides else "datatuple[1]."


def _server_runner(helper: Callable[..., int], setting: str) -> Callable[[TestCase, dict[str, Any]], Any]:
    """mail_admins/mail_managers: recipients come from the setting, the sender from SERVER_EMAIL."""

    def run(test: TestCase, kwargs: dict[str, Any]) -> Any:
        server_settings = {setting: list(kwargs.get("recipients") or []), "SERVER_EMAIL": kwargs.get("sender") or ""}
        with test.settings(**server_settings):
            return helper(
                kwargs.get("subject", ""),
                kwargs.get("message", ""),
                html_message=kwargs.get("html_message"),
                priority=kwargs.get("priority"),
            )

    return run


ADDRESS_KEYS = frozenset({"recipients", "sender", "subject", "message", "html_message"})
SEND_KEYS = (
    ADDRESS_KEYS | {"cc", "bcc", "headers", "priority", "backend", "scheduled_time", "expires_at"} | TEMPLATE_KEYS
)
PATHS = {
    path.name: path
    for path in [
        Path("send", SEND_KEYS, _run_send),
        Path("send_many", SEND_KEYS, _run_send_many, label=lambda overrides: "kwargs_list[1]."),
        Path(
            "backend",
            ADDRESS_KEYS | {"cc", "bcc", "headers", "priority", "backend"},
            _run_backend,
            label=_backend_label,
            string_recipients=False,
        ),
        Path(
            "backend_batch",
            ADDRESS_KEYS | {"cc", "bcc", "headers"},
            _run_backend_batch,
            label=lambda overrides: "messages[1].",
            string_recipients=False,
        ),
        Path(
            "django_send_mail",
            ADDRESS_KEYS,
            _run_django_send_mail,
            label=lambda overrides: "messages[0].",
            string_recipients=False,
        ),
        Path("send_mail", ADDRESS_KEYS | {"priority"}, _run_send_mail),
        Path("send_html_mail", ADDRESS_KEYS | {"priority", "headers"}, _run_send_html_mail),
        Path("send_mass_mail", (ADDRESS_KEYS - {"html_message"}) | {"priority"}, _run_send_mass_mail, _mass_mail_label),
        Path(
            "mail_admins",
            ADDRESS_KEYS | {"priority"},
            _server_runner(mail.mail_admins, "ADMINS"),
            string_recipients=False,
        ),
        Path(
            "mail_managers",
            ADDRESS_KEYS | {"priority"},
            _server_runner(mail.mail_managers, "MANAGERS"),
            string_recipients=False,
        ),
    ]
}


# -- cases -------------------------------------------------------------------

NOW = timezone.now().replace(microsecond=0)
NOT_JSON = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class Case:
    name: str
    overrides: dict[str, Any]
    error: type[InvalidEmail]
    field: str
    value: Any
    # Further text the message must contain (e.g. the setting to fix).
    mentions: tuple[str, ...] = ()
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def value_text(self) -> str | None:
        if self.value is NOT_SET:
            return None
        if isinstance(self.value, str):
            # Without the quotes: helpers may add a prefix (EMAIL_SUBJECT_PREFIX).
            return repr(self.value)[1:-1]
        return repr(self.value)


CASES = [
    # Addresses (RFC 5322).
    Case("recipient_invalid", {"recipients": ["not-an-address"]}, InvalidAddress, "recipients", "not-an-address"),
    Case(
        "recipient_unquoted_comma_display_name",
        {"recipients": ["Doe, John <j@x.com>"]},
        InvalidAddress,
        "recipients",
        "Doe, John <j@x.com>",
    ),
    Case(
        "recipient_string_is_not_split_on_commas",
        {"recipients": "a@example.com, b@example.com"},
        InvalidAddress,
        "recipients",
        "a@example.com, b@example.com",
    ),
    Case(
        "recipient_with_line_break",
        {"recipients": ["a@example.com\nBcc: c@example.com"]},
        InvalidAddress,
        "recipients",
        "a@example.com\nBcc: c@example.com",
    ),
    Case("cc_invalid", {"cc": ["cc@"]}, InvalidAddress, "cc", "cc@"),
    Case("bcc_invalid", {"bcc": ["bcc at example.com"]}, InvalidAddress, "bcc", "bcc at example.com"),
    Case("sender_invalid", {"sender": "not an address"}, InvalidAddress, "sender", "not an address"),
    Case(
        "sender_missing_and_no_default_from_email",
        {"sender": None},
        MissingSender,
        "sender",
        NOT_SET,
        mentions=("DEFAULT_FROM_EMAIL",),
        settings={"DEFAULT_FROM_EMAIL": ""},
    ),
    # CR or LF in the subject or a header value.
    Case(
        "subject_with_lf",
        {"subject": "Hello\nBcc: victim@example.com"},
        InvalidHeader,
        "subject",
        "Hello\nBcc: victim@example.com",
    ),
    Case(
        "subject_with_cr",
        {"subject": "Hello\rBcc: victim@example.com"},
        InvalidHeader,
        "subject",
        "Hello\rBcc: victim@example.com",
    ),
    Case(
        "header_value_with_crlf",
        {"headers": {"X-Custom": "ok\r\nBcc: victim@example.com"}},
        InvalidHeader,
        "headers['X-Custom']",
        "ok\r\nBcc: victim@example.com",
    ),
    Case(
        "header_value_with_lf",
        {"headers": {"X-Custom": "ok\nX-Injected: 1"}},
        InvalidHeader,
        "headers['X-Custom']",
        "ok\nX-Injected: 1",
    ),
    # Queue options.
    Case("priority_unknown", {"priority": "bogus"}, InvalidPriority, "priority", "bogus"),
    Case(
        "scheduled_time_after_expires_at",
        {"scheduled_time": NOW + datetime.timedelta(days=2), "expires_at": NOW + datetime.timedelta(days=1)},
        InvalidSchedule,
        "scheduled_time",
        NOW + datetime.timedelta(days=2),
        mentions=("expires_at", (NOW + datetime.timedelta(days=1)).isoformat()),
    ),
    Case("backend_alias_unknown", {"backend": "no-such-alias"}, UnknownBackend, "backend", "no-such-alias"),
    # Templates.
    Case(
        "template_with_subject",
        {"template": "welcome", "subject": "Hi"},
        TemplateConflict,
        "subject",
        "Hi",
        mentions=("template",),
    ),
    Case(
        "template_with_message",
        {"template": "welcome", "message": "Plain"},
        TemplateConflict,
        "message",
        "Plain",
        mentions=("template",),
    ),
    Case(
        "template_with_html_message",
        {"template": "welcome", "html_message": "<p>Hi</p>"},
        TemplateConflict,
        "html_message",
        "<p>Hi</p>",
        mentions=("template",),
    ),
    # MissingEmailTemplate: an UnknownTemplate that is also EmailTemplate.DoesNotExist, as django-post_office raised.
    Case("template_name_unknown", {"template": "no-such-template"}, MissingEmailTemplate, "template", "no-such-template"),
    # With the language fallback turned off; by default "fr" falls back to the base template.
    Case(
        "template_language_without_translation",
        {"template": "welcome", "language": "fr"},
        MissingEmailTemplate,
        "language",
        "fr",
        mentions=("welcome",),
        settings={"POST_OFFICE": {**django_settings.POST_OFFICE, "LANGUAGE_FALLBACKS": False}},
    ),
    Case("template_language_unknown", {"template": "welcome", "language": "xx"}, InvalidArgument, "language", "xx"),
    Case(
        "render_on_delivery_without_template", {"render_on_delivery": True}, InvalidArgument, "render_on_delivery", True
    ),
    # A context is stored only with render_on_delivery; then it must be JSON.
    Case(
        "context_not_json_when_stored",
        {"template": "welcome", "context": {"name": "Al", "when": NOT_JSON}, "render_on_delivery": True},
        InvalidContext,
        "context['when']",
        NOT_JSON,
        mentions=("datetime", "JSON"),
    ),
    Case(
        "context_nan_when_stored",
        {"template": "welcome", "context": {"name": "Al", "scores": [1.0, math.nan]}, "render_on_delivery": True},
        InvalidContext,
        "context['scores'][1]",
        math.nan,
        mentions=("JSON",),
    ),
]


def _break_cases() -> list[Case]:
    """Every line break str.splitlines() knows, and NUL, in every field that becomes a header."""
    cases = []
    for char, name in HEADER_BREAKS.items():
        code = f"u{ord(char):04x}"
        shown = (f"U+{ord(char):04X} {name}",)
        injected = f"Hello{char}Reply-To : attacker@example.com"
        cases += [
            Case(f"subject_with_{code}", {"subject": injected}, InvalidHeader, "subject", injected, shown),
            Case(
                f"header_value_with_{code}",
                {"headers": {"X-Custom": f"ok{char}X-Injected : 1"}},
                InvalidHeader,
                "headers['X-Custom']",
                f"ok{char}X-Injected : 1",
                shown,
            ),
            Case(
                f"header_name_with_{code}",
                {"headers": {f"X-Bad{char}Bcc": "v"}},
                InvalidHeader,
                "headers name",
                f"X-Bad{char}Bcc",
                shown,
            ),
            Case(
                f"reply_to_with_{code}",
                {"headers": {"Reply-To": f"r@example.com{char}X-Injected : 1"}},
                InvalidHeader,
                "headers['Reply-To']",
                f"r@example.com{char}X-Injected : 1",
                shown,
            ),
            Case(
                f"sender_name_with_{code}",
                {"sender": f'"Sen{char}der" <sender@example.com>'},
                InvalidAddress,
                "sender",
                f'"Sen{char}der" <sender@example.com>',
                shown,
            ),
            Case(
                f"recipient_name_with_{code}",
                {"recipients": [f"Al{char}ice <alice@example.com>"]},
                InvalidAddress,
                "recipients",
                f"Al{char}ice <alice@example.com>",
                shown,
            ),
        ]
    return cases


CASES += _break_cases()

MATRIX = [(case, path) for case in CASES for path in PATHS.values() if path.applies(case.overrides)]


def _assert_nothing_stored(test: TestCase) -> None:
    test.assertEqual(Email.objects.count(), 0)
    test.assertEqual(Attachment.objects.count(), 0)
    test.assertEqual(Attachment.emails.through.objects.count(), 0)
    test.assertEqual(Log.objects.count(), 0)


def _create_templates() -> None:
    base = EmailTemplate.objects.create(
        name="welcome", subject="Hi {{ name }}", content="Hello {{ name }}", html_content="<p>{{ name }}</p>"
    )
    EmailTemplate.objects.create(
        name="welcome", language="de", default_template=base, subject="Hallo {{ name }}", content="Hallo"
    )


class ValidationMatrixTest(TestCase):
    """One generated test per applicable (case, path) pair; see the module docstring."""

    @classmethod
    def setUpTestData(cls) -> None:
        _create_templates()

    def assert_rejected(self, case: Case, path: Path) -> None:
        kwargs = _base(case.overrides)
        with self.settings(**case.settings), self.assertRaises(InvalidEmail) as caught:
            path.run(self, kwargs)
        error = caught.exception
        self.assertIs(type(error), case.error, f"{type(error).__name__}: {error}")
        # django-post_office callers catch these two.
        self.assertIsInstance(error, ValidationError)
        self.assertIsInstance(error, ValueError)
        expected_field = path.label(case.overrides) + case.field
        text = str(error)
        self.assertEqual(error.field, expected_field, text)
        self.assertTrue(text.startswith(f"{expected_field}: "), text)
        value_text = case.value_text()
        if value_text is not None:
            self.assertIn(value_text, text)
        for mention in case.mentions:
            self.assertIn(mention, text)
        _assert_nothing_stored(self)

    def test_matrix_covers_every_case_on_its_paths(self) -> None:
        # Guards the generator: no case silently drops out of the matrix.
        paths_by_case: dict[str, set[str]] = {}
        for case, path in MATRIX:
            paths_by_case.setdefault(case.name, set()).add(path.name)
        self.assertEqual(set(paths_by_case), {case.name for case in CASES})
        for case in CASES:
            self.assertTrue({"send", "send_many"} <= paths_by_case[case.name], case.name)
        # Cases every path can express run on every path.
        for name in (
            "recipient_invalid",
            "sender_invalid",
            "sender_missing_and_no_default_from_email",
            "subject_with_lf",
            "subject_with_cr",
            "recipient_unquoted_comma_display_name",
        ):
            self.assertEqual(paths_by_case[name], set(PATHS), name)
        for name in ("priority_unknown",):
            self.assertEqual(paths_by_case[name], set(PATHS) - {"backend_batch", "django_send_mail"}, name)
        self.assertEqual(paths_by_case["backend_alias_unknown"], {"send", "send_many", "backend"})
        self.assertEqual(
            paths_by_case["header_value_with_crlf"], {"send", "send_many", "backend", "backend_batch", "send_html_mail"}
        )


def _rejection_test(case: Case, path: Path) -> Callable[[ValidationMatrixTest], None]:
    def test(self: ValidationMatrixTest) -> None:
        self.assert_rejected(case, path)

    test.__doc__ = f"{case.name} via {path.name}: {case.error.__name__} naming {case.field}; nothing stored."
    return test


for _case, _path in MATRIX:
    setattr(ValidationMatrixTest, f"test_{_case.name}__{_path.name}", _rejection_test(_case, _path))


# -- accepted input ----------------------------------------------------------


def _stored() -> Email:
    """The one stored email that is not a good neighbour of the batch paths."""
    return Email.objects.exclude(subject__startswith="Good").get()


class AcceptedAddressesTest(TestCase):
    """Display names with commas and IDN domains are valid and stored exactly as given."""

    def assert_stored_intact(self, path: Path) -> None:
        overrides: dict[str, Any] = {"recipients": list(DISPLAY_NAME_TO), "sender": DISPLAY_NAME_SENDER}
        if "cc" in path.keys:
            overrides["cc"] = list(DISPLAY_NAME_CC)
        path.run(self, _base(overrides))
        email = _stored()
        self.assertEqual(email.to, DISPLAY_NAME_TO)
        self.assertEqual(email.from_email, DISPLAY_NAME_SENDER)
        if "cc" in path.keys:
            self.assertEqual(email.cc, DISPLAY_NAME_CC)
        # Read back from the database, not just the instance the call returned.
        email.refresh_from_db()
        self.assertEqual(email.to, DISPLAY_NAME_TO)

    def assert_single_string_is_one_address(self, path: Path) -> None:
        path.run(self, _base({"recipients": DISPLAY_NAME_TO[0]}))
        self.assertEqual(_stored().to, [DISPLAY_NAME_TO[0]])


def _accepted_test(path: Path) -> Callable[[AcceptedAddressesTest], None]:
    def test(self: AcceptedAddressesTest) -> None:
        self.assert_stored_intact(path)

    return test


def _single_string_test(path: Path) -> Callable[[AcceptedAddressesTest], None]:
    def test(self: AcceptedAddressesTest) -> None:
        self.assert_single_string_is_one_address(path)

    return test


for _path in PATHS.values():
    setattr(AcceptedAddressesTest, f"test_display_names_and_idn_stored_intact__{_path.name}", _accepted_test(_path))
    if _path.string_recipients:
        setattr(AcceptedAddressesTest, f"test_single_string_is_one_address__{_path.name}", _single_string_test(_path))


class AcceptedContextTest(TestCase):
    """A context that is rendered at once is never stored, so it need not be JSON."""

    @classmethod
    def setUpTestData(cls) -> None:
        _create_templates()

    def test_non_json_context_rendered_now__send(self) -> None:
        email = mail.send(TO, SENDER, template="welcome", context={"name": NOT_JSON.year, "when": NOT_JSON})
        email.refresh_from_db()
        self.assertEqual(email.subject, "Hi 2030")
        self.assertIsNone(email.context)

    def test_non_json_context_rendered_now__send_many(self) -> None:
        context = {"name": NOT_JSON.year, "when": NOT_JSON}
        mail.send_many([{"recipients": TO, "sender": SENDER, "template": "welcome", "context": context}])
        email = Email.objects.get()
        self.assertEqual(email.subject, "Hi 2030")
        self.assertIsNone(email.context)

    def test_json_context_stored_for_render_on_delivery(self) -> None:
        email = mail.send(
            TO, SENDER, template="welcome", context={"name": "Al", "n": [1, 2.5]}, render_on_delivery=True
        )
        email.refresh_from_db()
        self.assertEqual(email.context, {"name": "Al", "n": [1, 2.5]})


class PlainAddressFastPathTest(SimpleTestCase):
    """Addresses of the common shapes skip the parsers: each one the shortcut takes, the full check takes too."""

    @given(st.from_regex(validation._PLAIN_ADDRESS, fullmatch=True))
    @settings(max_examples=300)
    def test_the_shortcut_accepts_nothing_the_full_check_refuses(self, address):
        assume(validation._plain_address(address))  # long local parts and addresses take the full check
        self.assertEqual(validation.parse_address(address, "to"), address)
        self.assertEqual(validation._parse_address(address, "to"), address)

    def test_other_shapes_take_the_full_check(self):
        for address in ("a@b", "x@-bad.com", "Jo, Doe <a@b.co>", '"Doe, J" <a@b.co>', "a@b.co junk", "é@b.co"):
            with self.subTest(address), mock.patch.object(
                validation, "_parse_address", wraps=validation._parse_address
            ) as full:
                try:
                    validation.parse_address(address, "to")
                except InvalidEmail:
                    pass
                self.assertEqual(full.call_count, 1)


class SubjectAndEmptyHeadersTest(SimpleTestCase):
    """Headers Python's email package cannot write are refused when queued (found by the property tests on 6.1)."""

    def test_a_subject_header_is_refused(self):
        from post_office.exceptions import InvalidHeader
        from post_office.validation import parse_headers

        for name in ("Subject", "subject", "SUBJECT"):
            with self.subTest(name=name), self.assertRaisesMessage(InvalidHeader, "pass subject= instead"):
                parse_headers({name: "Hello"})

    def test_an_empty_header_needs_a_name_that_fits_the_line(self):
        from post_office.exceptions import InvalidHeader
        from post_office.validation import FOLDABLE_NAME_LENGTH, parse_headers

        self.assertEqual(parse_headers({"X-" + "a" * (FOLDABLE_NAME_LENGTH - 2): ""}), {"X-" + "a" * 74: ""})
        self.assertEqual(parse_headers({"X-" + "a" * 200: "value"}), {"X-" + "a" * 200: "value"})
        with self.assertRaisesMessage(InvalidHeader, "an empty header needs a name of at most 76 characters"):
            parse_headers({"a" * 254: ""})
