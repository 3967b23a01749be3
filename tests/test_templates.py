"""Database templates: engine, language fallback, translation, cache, strict variables, plain text, previews."""

from __future__ import annotations

import datetime
import decimal
import tempfile
from unittest import mock

from django import template as django_template
from django.conf import settings
from django.contrib.auth.models import User
from django.core import checks
from django.core import mail as django_mail
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.template import Engine
from django.test import TestCase, override_settings
from django.urls import reverse
from django.utils import translation

import post_office
from post_office import mail, rendering
from post_office.conf import template_cache
from post_office.delivery import Worker
from post_office.exceptions import (
    MissingVariables,
    PostOfficeError,
    TemplateRenderError,
    TemplateSyntaxInvalid,
    UnknownTemplate,
)
from post_office.models import CACHE_KEY_VERSION, STATUS, Attachment, Email, EmailTemplate, Log
from post_office.rendering import cache_key, language_chain, render_preview
from post_office.rendering.files import RenderedFile
from post_office.rendering.lookup import _pack
from post_office.rendering.plaintext import html_to_text
from post_office.retry import is_permanent

# A tag library only one engine knows (used as that engine's builtin below).
register = django_template.Library()


@register.filter
def shout(value):
    return f"{str(value).upper()}!"


LANGUAGES = [
    ("en", "English"),
    ("de", "German"),
    ("pt", "Portuguese"),
    ("pt-br", "Brazilian Portuguese"),
    ("es", "Spanish"),
    ("id", "Indonesian"),
    ("fr", "French"),
]
POST_OFFICE_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "po-default"},
    "post_office": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "po-templates"},
}
ENGINES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True},
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "NAME": "emails",
        "OPTIONS": {"builtins": ["tests.test_templates"]},
    },
]


def po(**extra):
    """POST_OFFICE with these keys on top of the test settings (which name the delivery backends)."""
    return override_settings(POST_OFFICE={**settings.POST_OFFICE, **extra})


def deliver():
    return Worker(threads=1).run()


class EngineTest(TestCase):
    """TEMPLATE_ENGINE: the same engine validates, renders at enqueue and renders at delivery."""

    def test_configured_engine_renders_at_enqueue_and_at_delivery(self):
        with override_settings(TEMPLATES=ENGINES), po(TEMPLATE_ENGINE="emails"):
            EmailTemplate.objects.create(name="loud", subject="{{ name|shout }}", content="Hi {{ name|shout }}")
            now = mail.send("now@example.com", template="loud", context={"name": "tom"})
            later = mail.send("later@example.com", template="loud", context={"name": "ann"}, render_on_delivery=True)
            self.assertEqual((now.subject, now.message), ("TOM!", "Hi TOM!"))
            self.assertEqual(later.subject, "")
            self.assertEqual(deliver().sent, 2)
        delivered = {message.to[0]: (message.subject, message.body) for message in django_mail.outbox}
        self.assertEqual(delivered, {"now@example.com": ("TOM!", "Hi TOM!"), "later@example.com": ("ANN!", "Hi ANN!")})

    def test_another_engine_refuses_the_template(self):
        # Proof that the configured engine is the one in use: the first engine lacks 'shout'.
        with override_settings(TEMPLATES=ENGINES), self.assertRaises(TemplateSyntaxInvalid):
            EmailTemplate.objects.create(name="loud", subject="{{ name|shout }}")
        with override_settings(TEMPLATES=ENGINES), po(TEMPLATE_ENGINE="emails"):
            self.assertIs(rendering.get_engine(), rendering.get_engine())
            EmailTemplate.objects.create(name="loud", subject="{{ name|shout }}")

    def test_render_on_delivery_uses_the_configured_engine(self):
        with override_settings(TEMPLATES=ENGINES), po(TEMPLATE_ENGINE="emails"):
            EmailTemplate.objects.create(name="loud", subject="{{ name|shout }}", content="x")
            email = mail.send("a@example.com", template="loud", context={"name": "zoe"}, render_on_delivery=True)
            self.assertEqual(Email.objects.get(pk=email.pk).email_message().subject, "ZOE!")


@override_settings(LANGUAGES=LANGUAGES, LANGUAGE_CODE="en")
class LanguageFallbackTest(TestCase):
    def setUp(self):
        self.base = EmailTemplate.objects.create(name="welcome", subject="Welcome {{ name }}", content="base")

    def translate(self, language, subject):
        return EmailTemplate.objects.create(
            name="welcome", default_template=self.base, language=language, subject=subject, content=language
        )

    def test_language_chain(self):
        self.assertEqual(language_chain("pt-br"), ["pt-br", "pt", ""])
        self.assertEqual(language_chain("pt-BR"), ["pt-br", "pt", ""])
        self.assertEqual(language_chain("pt_BR"), ["pt-br", "pt", ""])
        self.assertEqual(language_chain("zh-hant-tw"), ["zh-hant-tw", "zh-hant", "zh", ""])
        self.assertEqual(language_chain("de"), ["de", ""])
        self.assertEqual(language_chain(""), [""])
        with po(LANGUAGE_FALLBACKS=False):
            self.assertEqual(language_chain("pt-br"), ["pt-br"])
        with po(LANGUAGE_FALLBACKS={"pt-BR": ["es", "pt"], "fr": "de"}):
            self.assertEqual(language_chain("pt-br"), ["pt-br", "es", "pt", ""])
            self.assertEqual(language_chain("fr"), ["fr", "de", ""])
            self.assertEqual(language_chain("de-at"), ["de-at", "de", ""])
        with po(LANGUAGE_FALLBACKS={"pt-br": 5}), self.assertRaisesMessage(ImproperlyConfigured, "['pt-br']"):
            language_chain("pt-br")

    def test_missing_translation_falls_back_to_the_parent_language(self):
        self.translate("pt", "Bem-vindo {{ name }}")
        email = mail.send("a@example.com", template="welcome", context={"name": "Ana"}, language="pt-br")
        email.refresh_from_db()
        self.assertEqual(email.subject, "Bem-vindo Ana")
        self.assertEqual((email.language, email.template_language), ("pt-br", "pt"))
        self.assertEqual(email.template.language, "pt")

    def test_exact_translation_wins(self):
        self.translate("pt", "pt")
        self.translate("pt-br", "pt-br")
        email = mail.send("a@example.com", template="welcome", language="pt-BR")
        self.assertEqual((email.subject, email.language, email.template_language), ("pt-br", "pt-br", "pt-br"))

    def test_falls_back_to_the_base_template(self):
        email = mail.send("a@example.com", template="welcome", context={"name": "Ana"}, language="pt-br")
        self.assertEqual((email.subject, email.template_language), ("Welcome Ana", ""))
        self.assertEqual(email.template, self.base)

    def test_fallback_can_be_turned_off(self):
        self.translate("pt", "pt")
        with po(LANGUAGE_FALLBACKS=False), self.assertRaises(UnknownTemplate) as raised:
            mail.send("a@example.com", template="welcome", language="pt-br")
        self.assertEqual(raised.exception.field, "language")
        self.assertIn("'pt-br'", str(raised.exception))
        self.assertFalse(Email.objects.exists())

    def test_explicit_chain(self):
        self.translate("pt", "pt")
        self.translate("es", "es")
        with po(LANGUAGE_FALLBACKS={"pt-br": ["es"]}):
            email = mail.send("a@example.com", template="welcome", language="pt-br")
        self.assertEqual((email.subject, email.template_language), ("es", "es"))

    def test_template_instance_falls_back_too(self):
        self.translate("pt", "pt")
        email = mail.send("a@example.com", template=self.base, language="pt-br")
        self.assertEqual(email.template_language, "pt")

    def test_render_on_delivery_records_and_uses_the_fallback(self):
        self.translate("pt", "Olá {{ name }}")
        email = mail.send(
            "a@example.com", template="welcome", context={"name": "Rui"}, language="pt-br", render_on_delivery=True
        )
        self.assertEqual(Email.objects.get(pk=email.pk).template_language, "pt")
        self.assertEqual(deliver().sent, 1)
        self.assertEqual(django_mail.outbox[0].subject, "Olá Rui")

    def test_language_codes_are_normalised(self):
        translation_row = self.translate("pt-BR", "x")
        self.assertEqual(translation_row.language, "pt-br")
        email = mail.send("a@example.com", template="welcome", language="pt_BR")
        self.assertEqual((email.language, email.template_language), ("pt-br", "pt-br"))
        EmailTemplate.objects.filter(pk=translation_row.pk).update(language="PT")
        translation_row.refresh_from_db()
        self.assertEqual(translation_row.language, "pt")

    def test_send_many_falls_back_per_item(self):
        self.translate("de", "Hallo")
        emails = mail.send_many(
            [
                {"recipients": ["a@example.com"], "template": "welcome", "language": "de"},
                {"recipients": ["b@example.com"], "template": "welcome", "language": "pt-br"},
            ]
        )
        self.assertEqual([(e.subject, e.template_language) for e in emails], [("Hallo", "de"), ("Welcome ", "")])

    def test_admin_shows_the_language_used(self):
        self.translate("pt", "pt")
        email = mail.send("a@example.com", template="welcome", language="pt-br")
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(admin)
        response = self.client.get(reverse("admin:post_office_email_change", args=[email.pk]))
        # The detail page names the translation used when it differs from the language asked for.
        self.assertContains(response, "pt-br")
        self.assertContains(response, "translation used: pt")


@override_settings(LANGUAGES=LANGUAGES, LANGUAGE_CODE="en", USE_THOUSAND_SEPARATOR=False)
class TranslationOverrideTest(TestCase):
    """Rendering follows the email's language while another language is active."""

    def setUp(self):
        EmailTemplate.objects.create(
            name="i18n",
            subject='{% load i18n %}{% translate "Yes" %}',
            content='{% load i18n %}{% translate "No" %} {{ when|date:"F" }} {{ amount }}',
            html_content='{% load i18n %}<p>{% translate "Yes" %}</p>',
        )

    def test_enqueue_renders_in_the_email_language(self):
        context = {"when": datetime.date(2025, 1, 15), "amount": decimal.Decimal("1234.5")}
        with translation.override("en"):
            german = mail.send("a@example.com", template="i18n", context=context, language="de")
            english = mail.send("a@example.com", template="i18n", context=context)
            self.assertEqual(translation.get_language(), "en")
        self.assertEqual(german.subject, "Ja")
        self.assertEqual(german.message, "Nein Januar 1234,5")
        self.assertEqual(german.html_message, "<p>Ja</p>")
        self.assertEqual((english.subject, english.message), ("Yes", "No January 1234.5"))

    def test_delivery_renders_in_the_email_language(self):
        mail.send(
            "a@example.com",
            template="i18n",
            context={"when": "", "amount": 1.5},
            language="de",
            render_on_delivery=True,
        )
        with translation.override("en"):
            self.assertEqual(deliver().sent, 1)
            self.assertEqual(translation.get_language(), "en")
        message = django_mail.outbox[0]
        self.assertEqual((message.subject, message.body), ("Ja", "Nein  1,5"))

    def test_fallback_template_still_renders_in_the_requested_language(self):
        # No German translation: the base template is used, rendered in German.
        email = mail.send("a@example.com", template="i18n", context={"when": "", "amount": 2}, language="de")
        self.assertEqual((email.subject, email.template_language), ("Ja", ""))


@override_settings(LANGUAGES=LANGUAGES, CACHES=POST_OFFICE_CACHE)
class TemplateCacheTest(TestCase):
    def setUp(self):
        caches["post_office"].clear()
        self.base = EmailTemplate.objects.create(name="news", subject="Base {{ n }}")
        self.german = EmailTemplate.objects.create(
            name="news", default_template=self.base, language="de", subject="Deutsch {{ n }}"
        )

    def subject(self, language="de", name="news"):
        return mail.send("a@example.com", template=name, context={"n": 1}, language=language, commit=False).subject

    def warm(self):
        self.subject()
        with self.assertNumQueries(0):
            self.assertEqual(self.subject(), "Deutsch 1")

    def test_lookups_are_cached_in_the_post_office_alias(self):
        with self.assertNumQueries(1):
            self.subject()
        with self.assertNumQueries(0):
            self.assertEqual(self.subject("en"), "Base 1")
        self.assertIsNotNone(caches["post_office"].get(cache_key("news")))
        self.assertIsNone(caches["default"].get(cache_key("news")))

    def test_edit_of_a_translation_is_served_at_once(self):
        self.warm()
        self.german.subject = "Neu {{ n }}"
        self.german.save()
        self.assertEqual(self.subject(), "Neu 1")

    def test_edit_of_the_base_template_is_served_at_once(self):
        self.warm()
        self.base.subject = "New base {{ n }}"
        self.base.save()
        self.assertEqual(self.subject("fr"), "New base 1")

    def test_queryset_update_invalidates(self):
        self.warm()
        EmailTemplate.objects.filter(language="de").update(subject="Aktualisiert")
        self.assertEqual(self.subject(), "Aktualisiert")

    def test_bulk_update_invalidates(self):
        self.warm()
        self.german.subject = "Massen"
        EmailTemplate.objects.bulk_update([self.german], ["subject"])
        self.assertEqual(self.subject(), "Massen")

    def test_bulk_create_of_a_translation_invalidates(self):
        self.subject("fr")
        EmailTemplate.objects.bulk_create(
            [EmailTemplate(name="news", default_template=self.base, language="fr", subject="Français")]
        )
        self.assertEqual(self.subject("fr"), "Français")

    def test_delete_invalidates(self):
        self.warm()
        self.german.delete()
        self.assertEqual(self.subject(), "Base 1")
        self.subject("fr")
        EmailTemplate.objects.filter(name="news").delete()
        with self.assertRaises(UnknownTemplate):
            self.subject()

    def test_rename_invalidates_the_old_and_new_name(self):
        self.warm()
        self.base.name = "digest"
        self.base.save()
        with self.assertRaises(UnknownTemplate):
            self.subject(name="news")
        self.assertEqual(self.subject(name="digest"), "Deutsch 1")

    def test_names_that_collided_in_django_post_office_stay_apart(self):
        # django-post_office keyed the cache on name + language: 'welcome' + 'id'
        # and 'welcomeid' + '' shared one key.
        welcome = EmailTemplate.objects.create(name="welcome", subject="Welcome base")
        EmailTemplate.objects.create(name="welcome", default_template=welcome, language="id", subject="Selamat datang")
        EmailTemplate.objects.create(name="welcomeid", subject="Welcome-id template")
        for _round in range(2):  # the second round is served from the cache
            self.assertEqual(self.subject("id", "welcome"), "Selamat datang")
            self.assertEqual(self.subject("", "welcomeid"), "Welcome-id template")
            self.assertEqual(self.subject("", "welcome"), "Welcome base")
        self.assertNotEqual(cache_key("welcome"), cache_key("welcomeid"))
        self.assertTrue(cache_key("welcome").startswith(f"post_office:template:v{CACHE_KEY_VERSION}:"))

    def test_invalidated_again_when_the_transaction_commits(self):
        self.warm()
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            self.german.subject = "Später"
            self.german.save()
            # Another process reads the old row before the commit and caches it.
            caches["post_office"].set(cache_key("news"), _pack({"": self.base}))
        self.assertTrue(callbacks)
        self.assertEqual(self.subject(), "Später")

    def test_admin_bulk_delete_invalidates(self):
        self.warm()
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(admin)
        response = self.client.post(
            reverse("admin:post_office_emailtemplate_changelist"),
            {"action": "delete_selected", "_selected_action": [self.base.pk], "post": "yes"},
        )
        self.assertEqual(response.status_code, 302)
        self.assertFalse(EmailTemplate.objects.exists())
        with self.assertRaises(UnknownTemplate):
            self.subject()

    def test_admin_edit_of_a_translation_invalidates(self):
        self.warm()
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(admin)
        prefix = "translated_templates"
        data = {
            "name": "news",
            "description": "",
            "subject": "Base {{ n }}",
            "content": "",
            "html_content": "",
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "1",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
            f"{prefix}-0-id": str(self.german.pk),
            f"{prefix}-0-default_template": str(self.base.pk),
            f"{prefix}-0-language": "de",
            f"{prefix}-0-subject": "Admin {{ n }}",
            f"{prefix}-0-content": "",
            f"{prefix}-0-html_content": "",
        }
        response = self.client.post(reverse("admin:post_office_emailtemplate_change", args=[self.base.pk]), data)
        self.assertEqual(
            response.status_code, 302, getattr(response, "context", None) and response.context.get("errors")
        )
        self.assertEqual(self.subject(), "Admin 1")

    def test_setting_turns_it_off(self):
        with po(TEMPLATE_CACHE=False):
            self.subject()
            with self.assertNumQueries(1):
                self.subject()
        self.assertIsNone(caches["post_office"].get(cache_key("news")))

    def test_django_post_office_setting_turns_it_off(self):
        with override_settings(POST_OFFICE_CACHE=False):
            self.subject()
            self.assertIsNone(caches["post_office"].get(cache_key("news")))


class CacheChoiceTest(TestCase):
    def test_per_process_default_cache_is_not_used(self):
        # Django's implicit default (LocMemCache) cannot be invalidated from another process.
        with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
            self.assertIsNone(template_cache())

    def test_shared_default_cache_is_used(self):
        with tempfile.TemporaryDirectory() as directory:
            shared = {
                "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": directory}
            }
            with override_settings(CACHES=shared):
                self.assertIs(template_cache(), caches["default"])
                EmailTemplate.objects.create(name="t", subject="s")
                mail.send("a@example.com", template="t")
                self.assertIsNotNone(caches["default"].get(cache_key("t")))

    def test_explicit_alias(self):
        with override_settings(CACHES=POST_OFFICE_CACHE), po(TEMPLATE_CACHE="default"):
            self.assertIs(template_cache(), caches["default"])

    def test_checks(self):
        from post_office.checks import check_settings

        with po(TEMPLATE_CACHE="nope", LANGUAGE_FALLBACKS={"pt-br": 5}):
            ids = {error.id for error in check_settings()}
        self.assertIn("post_office.E011", ids)
        self.assertIn("post_office.E012", ids)
        with po(LANGUAGE_FALLBACKS="yes"):
            self.assertIn("post_office.E011", {error.id for error in check_settings()})
        self.assertFalse(
            [e for e in checks.run_checks(tags=["post_office"]) if e.id in ("post_office.E011", "post_office.E012")]
        )


class DeleteTest(TestCase):
    """Deleting a base template deletes its translations (on MariaDB too, where the cascade
    would otherwise null their base first and break the check constraint), never an email."""

    def setUp(self):
        self.base = EmailTemplate.objects.create(name="gone")
        EmailTemplate.objects.create(name="gone", default_template=self.base, language="de")
        EmailTemplate.objects.create(name="gone", default_template=self.base, language="fr")
        self.email = mail.send("a@example.com", template="gone", language="de")

    def test_model_delete(self):
        self.assertEqual(self.base.delete(), (3, {"post_office.EmailTemplate": 3}))
        self.assertFalse(EmailTemplate.objects.exists())
        self.email.refresh_from_db()
        self.assertIsNone(self.email.template)

    def test_queryset_delete(self):
        other = EmailTemplate.objects.create(name="other")
        deleted = EmailTemplate.objects.filter(pk__in=[self.base.pk, other.pk]).delete()
        self.assertEqual(deleted, (4, {"post_office.EmailTemplate": 4}))
        self.assertFalse(EmailTemplate.objects.exists())
        self.assertTrue(Email.objects.filter(pk=self.email.pk).exists())


class SyntaxValidationTest(TestCase):
    """Every save path refuses a template that does not compile, naming the field and the line."""

    def assert_refused(self, call, field):
        with self.assertRaises(TemplateSyntaxInvalid) as raised:
            call()
        self.assertIn(field, raised.exception.errors)
        self.assertIn("line 3", raised.exception.errors[field])

    def test_every_save_path(self):
        bad = "one\ntwo\n{% if %}"
        base = EmailTemplate.objects.create(name="ok")
        self.assert_refused(lambda: EmailTemplate.objects.create(name="x", html_content=bad), "html_content")
        self.assert_refused(
            lambda: EmailTemplate.objects.create(name="ok", default_template=base, language="de", content=bad),
            "content",
        )
        self.assert_refused(
            lambda: EmailTemplate.objects.bulk_create([EmailTemplate(name="y", subject=bad)]), "subject"
        )
        self.assert_refused(lambda: EmailTemplate.objects.filter(pk=base.pk).update(content=bad), "content")
        base.html_content = bad
        self.assert_refused(lambda: EmailTemplate.objects.bulk_update([base], ["html_content"]), "html_content")
        self.assert_refused(base.save, "html_content")
        with self.assertRaises(ValidationError) as raised:
            base.full_clean()
        self.assertIn("line 3", raised.exception.message_dict["html_content"][0])
        self.assertEqual(list(EmailTemplate.objects.values_list("name", "html_content")), [("ok", "")])

    def test_admin_form_shows_the_line(self):
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(admin)
        prefix = "translated_templates"
        response = self.client.post(
            reverse("admin:post_office_emailtemplate_add"),
            {
                "name": "new",
                "subject": "s",
                "content": "a\n{% endif %}",
                "html_content": "",
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "line 2")
        self.assertFalse(EmailTemplate.objects.exists())


class StrictVariablesTest(TestCase):
    SOURCE = (
        "{% load i18n %}Hi {{ user.name }} {% if vip %}VIP{% endif %}"
        "{% for item in items %}{{ item }}{{ forloop.counter }}{% endfor %}"
        "{% with total=price %}{{ total }}{% endwith %}"
        "{% blocktranslate %}Hello {{ nick }}{% endblocktranslate %}"
        "{% blocktranslate with who=items.0 %}to {{ who }}{% endblocktranslate %}"
        "{% now 'Y' as year %}{{ year }}"
    )

    def setUp(self):
        EmailTemplate.objects.create(name="strict", subject="For {{ customer }}", content=self.SOURCE)

    def test_names_every_missing_root_variable(self):
        with po(STRICT_TEMPLATE_VARIABLES=True), self.assertRaises(MissingVariables) as raised:
            mail.send("a@example.com", template="strict", context={"items": ["x"]})
        error = raised.exception
        self.assertEqual(error.field, "context")
        self.assertEqual(error.value, ["customer", "nick", "price", "user", "vip"])
        self.assertIn("template 'strict'", str(error))
        self.assertFalse(Email.objects.exists())

    def test_complete_context_renders(self):
        context = {"items": ["x"], "user": {"name": "Al"}, "vip": False, "price": 3, "nick": "al", "customer": "C"}
        with po(STRICT_TEMPLATE_VARIABLES=True):
            email = mail.send("a@example.com", template="strict", context=context)
        self.assertTrue(email.message.startswith("Hi Al x1"))
        # None is a value: passing a variable as None satisfies strict mode.
        with po(STRICT_TEMPLATE_VARIABLES=True):
            mail.send("a@example.com", template="strict", context={**context, "user": None, "vip": None})

    def test_off_by_default(self):
        email = mail.send("a@example.com", template="strict", context={})
        self.assertTrue(email.message.startswith("Hi  "))

    def test_send_many_names_the_item(self):
        with po(STRICT_TEMPLATE_VARIABLES=True), self.assertRaises(MissingVariables) as raised:
            mail.send_many(
                [
                    {"recipients": ["a@example.com"], "subject": "{{ a }}", "context": {"a": 1}},
                    {"recipients": ["b@example.com"], "subject": "{{ b }}", "context": {"a": 1}},
                ]
            )
        self.assertIn("kwargs_list[1].context", str(raised.exception))
        self.assertIn("['b']", str(raised.exception))
        self.assertFalse(Email.objects.exists())

    def test_preview_accepts_strict_argument(self):
        with self.assertRaises(MissingVariables):
            render_preview("strict", {}, strict=True)
        self.assertEqual(render_preview("strict", {}).subject, "For ")


class AutoPlainTextTest(TestCase):
    HTML = (
        "<html><head><style>p {color: red}</style><title>ignored</title></head><body>"
        "<h1>Hello {{ name }}</h1><p>Please <a href='https://example.com/confirm?a=1&amp;b=2'>confirm</a>"
        " your address.<br>Thanks &amp; bye</p><ul><li>One</li><li>Two</li></ul>"
        "<script>alert('x')</script></body></html>"
    )
    TEXT = (
        "Hello Tom\n\nPlease confirm (https://example.com/confirm?a=1&b=2) your address.\nThanks & bye\n\n- One\n- Two"
    )

    def setUp(self):
        EmailTemplate.objects.create(name="html", subject="s", html_content=self.HTML)

    def test_plain_text_generated_from_html(self):
        email = mail.send("a@example.com", template="html", context={"name": "Tom"})
        self.assertEqual(email.message, self.TEXT)
        message = email.email_message()
        self.assertEqual(message.body, self.TEXT)
        self.assertEqual(message.alternatives[0][1], "text/html")

    def test_at_delivery_too(self):
        mail.send("a@example.com", template="html", context={"name": "Tom"}, render_on_delivery=True)
        deliver()
        self.assertEqual(django_mail.outbox[0].body, self.TEXT)

    def test_setting_turns_it_off(self):
        with po(AUTO_PLAIN_TEXT=False):
            email = mail.send("a@example.com", template="html", context={"name": "Tom"})
        self.assertEqual(email.message, "")
        self.assertEqual(email.email_message().content_subtype, "html")

    def test_written_plain_text_is_kept(self):
        EmailTemplate.objects.create(name="both", html_content="<p>html</p>", content="my text")
        self.assertEqual(mail.send("a@example.com", template="both").message, "my text")

    def test_converter(self):
        cases = {
            "<p>a</p><p>b</p>": "a\n\nb",
            "x<br/>y": "x\ny",
            "<ol><li>a</li><li>b</li></ol>": "1. a\n2. b",
            "<a href='mailto:bob@example.com'>bob@example.com</a>": "bob@example.com",
            "<a href='https://e.com'>https://e.com</a>": "https://e.com",
            "<a href='#top'>top</a>": "top",
            "&lt;tag&gt; &eacute;&#233;&nbsp;x": "<tag> éé x",
            "<div>one\n   two</div><div>three</div>": "one two\nthree",
            "<img src='cid:x' alt='Logo'> text": "Logo text",
            "<table><tr><td>Name</td><td>Tom</td></tr><tr><td>Age</td><td>3</td></tr></table>": "Name Tom\nAge 3",
            "<pre>  keep\n    this</pre>": "  keep\n    this",
            "<style>x</style><script>y</script><!-- c -->z": "z",
        }
        for html, text in cases.items():
            with self.subTest(html):
                self.assertEqual(html_to_text(html), text)


class DeliveryErrorsArePermanentTest(TestCase):
    """A template error at delivery fails the email once, with a Log, and it is never retried."""

    def setUp(self):
        self.template = EmailTemplate.objects.create(
            name="later", subject="Hi {{ name }}", content="{{ n|divisibleby:d }}"
        )

    def queue(self, **context):
        return mail.send("a@example.com", template="later", context=context, render_on_delivery=True)

    def assert_failed_for_good(self, email, exception_type):
        with po(MAX_RETRIES=5):
            stats = deliver()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 1, 0))
        email.refresh_from_db()
        self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 0))
        log = Log.objects.get(email=email)
        self.assertEqual((log.status, log.exception_type), (STATUS.failed, exception_type))
        with po(MAX_RETRIES=5):
            self.assertEqual(deliver().sent + deliver().failed, 0)  # not picked up again
        self.assertEqual(django_mail.outbox, [])

    def test_render_exception(self):
        email = self.queue(name="x", n=4, d=0)  # divisibleby:0 raises ZeroDivisionError
        self.assert_failed_for_good(email, "TemplateRenderError")
        self.assertIn("ZeroDivisionError", Log.objects.get(email=email).message)
        self.assertTrue(is_permanent(TemplateRenderError("t", ZeroDivisionError())))

    def test_syntax_error_written_around_validation(self):
        email = self.queue(name="x", n=4, d=2)
        # A raw write that skips validation (e.g. SQL): the error shows at delivery.
        EmailTemplate._base_manager.filter(pk=self.template.pk).update(subject="{% if %}")
        self.assert_failed_for_good(email, "TemplateSyntaxError")

    def test_missing_variable_in_strict_mode(self):
        email = self.queue(n=4, d=2)
        with po(STRICT_TEMPLATE_VARIABLES=True):
            self.assert_failed_for_good(email, "MissingVariables")
        self.assertIn("'name'", Log.objects.get(email=email).message)

    def test_deleted_template(self):
        email = self.queue(name="x", n=4, d=2)
        self.template.delete()
        self.assert_failed_for_good(email, "UnknownTemplate")

    def test_render_errors_are_post_office_errors(self):
        self.assertTrue(issubclass(MissingVariables, PostOfficeError))
        self.assertTrue(issubclass(TemplateRenderError, PostOfficeError))


class CompileOnceTest(TestCase):
    def test_send_many_compiles_each_source_once(self):
        # Sources unique to this test, so no earlier test compiled them.
        EmailTemplate.objects.create(
            name="bulk-compile",
            subject="Compile-once {{ n }}",
            content="Body compile-once {{ n }}",
            html_content="<p>compile-once {{ n }}</p>",
        )
        original = Engine.from_string
        before = rendering.compilations()
        with mock.patch.object(Engine, "from_string", autospec=True, side_effect=original) as from_string:
            emails = mail.send_many(
                [
                    {"recipients": [f"u{i}@example.com"], "template": "bulk-compile", "context": {"n": i}}
                    for i in range(300)
                ]
            )
            mail.send_many([{"recipients": ["again@example.com"], "template": "bulk-compile", "context": {"n": 0}}])
        self.assertEqual(len(emails), 300)
        self.assertEqual(emails[299].subject, "Compile-once 299")
        self.assertEqual(from_string.call_count, 3)  # subject, text and HTML, once each
        self.assertEqual(rendering.compilations() - before, 3)

    def test_compiled_templates_counts(self):
        compiled = rendering.CompiledTemplates()
        for _ in range(5):
            compiled.render("{{ x }} counted-once", {"x": 1}, autoescape=True)
        self.assertLessEqual(compiled.compilations, 1)


@override_settings(LANGUAGES=LANGUAGES)
class PreviewTest(TestCase):
    def setUp(self):
        self.base = EmailTemplate.objects.create(
            name="preview", subject="Hi {{ name }}", html_content="<p>Hello <a href='https://e.com'>{{ name }}</a></p>"
        )
        EmailTemplate.objects.create(
            name="preview", default_template=self.base, language="pt", subject="Olá {{ name }}", content="Texto"
        )

    def test_renders_without_storing_anything(self):
        with self.assertNumQueries(1):  # one read: the template and its translations
            preview = render_preview("preview", {"name": "Ana"}, language="pt-br")
        self.assertEqual((preview.subject, preview.message, preview.template_language), ("Olá Ana", "Texto", "pt"))
        base = render_preview(self.base, {"name": "Ana"})
        self.assertEqual(base.subject, "Hi Ana")
        self.assertEqual(base.message, "Hello Ana (https://e.com)")
        self.assertEqual(base.html_message, "<p>Hello <a href='https://e.com'>Ana</a></p>")
        self.assertEqual(base.inline_images, ())
        self.assertIs(base.template, self.base)
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Attachment.objects.exists())

    def test_cached_preview_makes_no_query(self):
        with override_settings(CACHES=POST_OFFICE_CACHE):
            caches["post_office"].clear()
            render_preview("preview", {"name": "A"})
            with self.assertNumQueries(0):
                render_preview("preview", {"name": "A"}, language="pt")

    def test_public_and_errors(self):
        self.assertIs(post_office.render_preview, render_preview)
        self.assertIn("render_preview", post_office.__all__)
        with self.assertRaises(UnknownTemplate):
            render_preview("nope")
        with self.assertRaises(ValueError):
            render_preview("preview", context=["not", "a", "dict"])

    def test_file_templates_are_delegated(self):
        calls = []

        def render_file_template(name, context, language):
            calls.append((name, dict(context), language))
            return RenderedFile("File subject", "file text", "<p>file</p>", language="de")

        with mock.patch("post_office.rendering.preview.render_file_template", render_file_template):
            preview = render_preview("file:email/welcome.html", {"a": 1}, language="de")
        self.assertEqual(calls, [("file:email/welcome.html", {"a": 1}, "de")])
        self.assertEqual(
            (preview.subject, preview.message, preview.html_message), ("File subject", "file text", "<p>file</p>")
        )
        self.assertEqual(preview.template_language, "de")
        self.assertIsNone(preview.template)


class RelativeIncludeTest(TestCase):
    """``{% include '../x' %}`` has no file to be relative to in an email template: a clear error, never a 500."""

    SOURCES = ["{% include '../x.html' %}", '{% include "./x.html" %}', "{% extends '../base.html' %}"]

    def test_the_admin_form_shows_an_error_on_the_field(self):
        from django.core.exceptions import ValidationError

        for source in self.SOURCES:
            with self.subTest(source):
                template = EmailTemplate(name="relative", subject="S", content=source)
                with self.assertRaises(ValidationError) as raised:
                    template.full_clean()
                self.assertIn("content", raised.exception.message_dict)
                self.assertIn("relative path", str(raised.exception.message_dict["content"]))

    def test_saving_refuses_it(self):
        with self.assertRaises(TemplateSyntaxInvalid):
            EmailTemplate.objects.create(name="relative", subject="S", html_content=self.SOURCES[0])
        self.assertFalse(EmailTemplate.objects.filter(name="relative").exists())

    def test_an_inline_source_rendered_by_send_raises_a_syntax_error(self):
        from post_office.exceptions import TemplateSyntaxInvalid

        with self.assertRaises(TemplateSyntaxInvalid) as raised:
            mail.send(["a@example.com"], "s@example.com", subject="Hi", message=self.SOURCES[1], context={})
        self.assertEqual(list(raised.exception.errors), ["message"])
        self.assertEqual(Email.objects.count(), 0)


class TemplateNameTest(TestCase):
    """A name is refused on every save path when ``mail_templates export`` could not name its file."""

    BAD = ["../x", "a//b", ".hidden", "a/./b", "welcome.de", "news.pt-br", "a\\b", "trailing/"]
    GOOD = ["welcome", "a/b/c", "v1.0", "Order confirmation", "email/welcome.html"]

    def test_bad_names_are_refused_with_the_export_rule(self):
        from django.core.exceptions import ValidationError

        from post_office.rendering.fileformat import file_path_for

        for name in self.BAD:
            with self.subTest(name):
                with self.assertRaises(ValueError) as export:
                    file_path_for(name, "")
                with self.assertRaises(ValidationError) as saved:
                    EmailTemplate.objects.create(name=name, subject="S")
                self.assertIn(str(export.exception), str(saved.exception.message_dict["name"]))
        self.assertEqual(EmailTemplate.objects.count(), 0)

    def test_renaming_through_update_is_checked_too(self):
        from django.core.exceptions import ValidationError

        EmailTemplate.objects.create(name="fine", subject="S")
        with self.assertRaises(ValidationError):
            EmailTemplate.objects.filter(name="fine").update(name="../escape")
        self.assertTrue(EmailTemplate.objects.filter(name="fine").exists())

    def test_good_names_are_kept(self):
        for name in self.GOOD:
            with self.subTest(name):
                self.assertEqual(EmailTemplate.objects.create(name=name, subject="S").name, name)
