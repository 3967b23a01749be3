"""Language variants the project does not list, accepted as Django's get_supported_language_variant accepts them.

The test settings list en, de, pt-br and fr. ``de-at`` stands for ``de`` (its
generic code), ``pt`` and ``pt-pt`` for ``pt-br`` (Django's non-strict match of a
listed variant), ``es`` and ``zh-hk`` for nothing: those are refused with the
same error as before, naming the field.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.test import TestCase, override_settings
from django.utils import translation

import post_office
from post_office import mail
from post_office.exceptions import InvalidArgument
from post_office.languages import check_language, supported_language
from post_office.models import Email, EmailTemplate
from post_office.templated import TemplatedEmailMessage, render_file_template
from tests.helpers import queueing

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = {
    "de": "de",
    "DE": "de",
    "de-at": "de",
    "de_AT": "de",
    "de-CH": "de",
    "en-gb": "en",
    "en-us": "en",
    "fr-ca": "fr",
    "pt-br": "pt-br",
    "pt_BR": "pt-br",
    "pt": "pt-br",
    "pt-pt": "pt-br",
}
REFUSED = ["es", "es-mx", "zh-hk", "xx", "de at", "-de", "x" * 40]


class SupportedLanguageTest(TestCase):
    def test_variants_stand_for_the_listed_code(self):
        for code, listed in ACCEPTED.items():
            with self.subTest(code=code):
                self.assertEqual(check_language(code), listed)

    def test_a_language_with_no_supported_base_is_refused(self):
        for code in REFUSED:
            with self.subTest(code=code), self.assertRaises(InvalidArgument) as caught:
                check_language(code)
            self.assertEqual(caught.exception.field, "language")
            self.assertIn("is not a language code in settings.LANGUAGES, nor a variant of one", str(caught.exception))

    def test_not_a_string_is_refused_and_empty_means_none(self):
        for value in (5, ["de"], b"de"):
            with self.subTest(value=value), self.assertRaises(InvalidArgument):
                check_language(value)
        self.assertEqual(check_language(""), "")
        self.assertEqual(check_language(None), "")

    def test_agrees_with_django_for_every_language_django_knows(self):
        """Every code of Django's LANG_INFO, and a regional variant of each, resolves as Django resolves it."""
        codes = {*LANG_INFO, *(f"{code}-zz" for code in LANG_INFO), *(f"{code}-{code}" for code in LANG_INFO)}
        for languages in (
            [("en", "English"), ("de", "German"), ("pt-br", "Brazilian Portuguese"), ("fr", "French")],
            [("en-gb", "British English"), ("zh-hant", "Traditional Chinese"), ("sr-latn", "Serbian Latin")],
        ):
            with override_settings(LANGUAGES=languages):
                for code in sorted(codes):
                    try:
                        expected = translation.get_supported_language_variant(code).lower()
                    except LookupError:
                        expected = None
                    with self.subTest(code=code, languages=[c for c, _ in languages]):
                        self.assertEqual(supported_language(code), expected)
        self.assertGreater(len(codes), 300)

    @override_settings(LANGUAGES=[("en-gb", "British English"), ("zh-hant", "Traditional Chinese")])
    def test_django_fallbacks_and_listed_variants(self):
        self.assertEqual(check_language("zh-hk"), "zh-hant")  # Django's LANG_INFO fallback
        self.assertEqual(check_language("en"), "en-gb")  # a listed variant of the generic code
        self.assertEqual(check_language("en-us"), "en-gb")
        self.assertEqual(check_language("zh-hans"), "zh-hant")  # Django's choice too: the one listed Chinese
        with self.assertRaises(InvalidArgument):
            check_language("de-at")

    def test_without_i18n_django_resolves_no_variant(self):
        # In a process of its own: Django picks its translation functions once, by USE_I18N.
        code = (
            "import django; from django.conf import settings; "
            "settings.configure(USE_I18N=False, LANGUAGES=[('en', 'English'), ('de', 'German')]); django.setup(); "
            "from post_office.languages import supported_language as s; "
            "print([s(c) for c in ('de', 'DE', 'de-at', 'en-gb', 'es')])"
        )
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "['de', 'de', None, None, None]")


class EntryPointsTest(TestCase):
    """Every way to queue mail stores the listed code Django picked, and renders that translation."""

    def setUp(self):
        base = EmailTemplate.objects.create(name="order", subject="Order {{ n }}", content="Your order")
        EmailTemplate.objects.create(
            name="order", language="de", default_template=base, subject="Bestellung {{ n }}", content="Ihre Bestellung"
        )

    def test_send(self):
        email = mail.send("to@example.com", "from@example.com", template="order", context={"n": 1}, language="de-AT")
        email.refresh_from_db()
        self.assertEqual((email.language, email.template_language, email.subject), ("de", "de", "Bestellung 1"))

    def test_send_with_a_variant_of_a_language_without_translation_falls_back_to_the_base(self):
        email = mail.send("to@example.com", "from@example.com", template="order", context={"n": 2}, language="fr-ca")
        self.assertEqual((email.language, email.template_language, email.subject), ("fr", "", "Order 2"))

    def test_send_refuses_a_language_with_no_supported_base_and_stores_nothing(self):
        with self.assertRaises(InvalidArgument) as caught:
            mail.send("to@example.com", "from@example.com", template="order", language="es-mx")
        self.assertEqual(caught.exception.field, "language")
        self.assertFalse(Email.objects.exists())

    def test_send_many_validates_like_send(self):
        emails = mail.send_many(
            [
                {"recipients": ["a@example.com"], "template": "order", "context": {"n": 1}, "language": "de-ch"},
                {"recipients": ["b@example.com"], "template": "order", "context": {"n": 2}, "language": "pt"},
            ]
        )
        self.assertEqual([(e.language, e.subject) for e in emails], [("de", "Bestellung 1"), ("pt-br", "Order 2")])
        with self.assertRaises(InvalidArgument):
            mail.send_many(
                [
                    {"recipients": ["c@example.com"], "template": "order", "language": "de-at"},
                    {"recipients": ["d@example.com"], "template": "order", "language": "zh-hk"},
                ]
            )
        self.assertEqual(Email.objects.count(), 2)

    def test_render_on_delivery_keeps_the_listed_code(self):
        email = mail.send(
            "to@example.com", "from@example.com", template="order", context={"n": 3}, language="de-at",
            render_on_delivery=True,
        )  # fmt: skip
        self.assertEqual(Email.objects.get(pk=email.pk).language, "de")
        self.assertEqual(email.email_message().subject, "Bestellung 3")

    def test_django_messages_through_the_queueing_backend(self):
        with queueing():
            message = post_office.queue_options(EmailMessage("Hi", "Body", "from@example.com", ["to@example.com"]))
            post_office.queue_options(message, language="de-at")
            message.send()
        self.assertEqual(Email.objects.get().language, "de")

    def test_file_templates_and_templated_messages(self):
        rendered = render_file_template("file:email/welcome.html", {"name": "Ann"}, "de-at")
        self.assertEqual((rendered.subject, rendered.language), ("Willkommen, Ann", "de"))
        with queueing():
            message = TemplatedEmailMessage(
                context={"name": "Ann"}, template_name="email/welcome.html", language="de-at"
            )
            message.send(to=["to@example.com"])
        email = Email.objects.get()
        self.assertEqual((email.language, email.subject), ("de", "Willkommen, Ann"))
        with self.assertRaises(InvalidArgument):
            TemplatedEmailMessage(context={}, template_name="email/welcome.html", language="es")


class EmailTemplateTest(TestCase):
    def test_a_translation_in_a_variant_is_a_translation_in_the_listed_code(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        translation_ = EmailTemplate(name="welcome", default_template=base, language="de-AT", subject="Hallo")
        translation_.full_clean()
        translation_.save()
        self.assertEqual(EmailTemplate.objects.get(pk=translation_.pk).language, "de")
        email = mail.send("to@example.com", "from@example.com", template="welcome", language="de-ch")
        self.assertEqual(email.subject, "Hallo")

    def test_a_second_translation_through_a_variant_is_refused(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        EmailTemplate.objects.create(name="welcome", default_template=base, language="de", subject="Hallo")
        with self.assertRaises(ValidationError):
            EmailTemplate(name="welcome", default_template=base, language="de-at", subject="Servus").full_clean()

    def test_a_language_with_no_supported_base_is_refused(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        with self.assertRaises(ValidationError) as caught:
            EmailTemplate(name="welcome", default_template=base, language="es-mx", subject="Hola").full_clean()
        self.assertIn("language", caught.exception.message_dict)
