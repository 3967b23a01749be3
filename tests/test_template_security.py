"""What a database template's author can reach, and restricted mode (RESTRICTED_TEMPLATES) taking it away.

docs/security.md states it. Each thing an author can reach is shown reachable
with the mode off (today's behaviour, and the default) and refused with it on:
through ``mail.send``, through ``render_on_delivery`` at delivery, in the
admin's template form and in ``render_preview``.
"""

from __future__ import annotations

import datetime
import decimal
import tempfile
from pathlib import Path
from typing import Any

from django import template as django_template
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core import checks
from django.core import mail as django_mail
from django.core.cache import cache
from django.core.cache.utils import make_template_fragment_key
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.template import TemplateSyntaxError
from django.test import TestCase, override_settings
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from post_office import mail
from post_office.delivery import Worker
from post_office.exceptions import InvalidContext, TemplateSyntaxInvalid
from post_office.models import STATUS, Email, EmailTemplate, Log
from post_office.rendering import render_preview
from post_office.template_files import TemplateFilesError, import_templates

# A project's own tag library: a database template loads it like any other.
register = django_template.Library()


@register.simple_tag
def setting(name: str) -> Any:
    """A tag many projects have, to show a setting in their pages."""
    return getattr(settings, name, "")


_ENGINE = settings.TEMPLATES[0]
TEMPLATES = [{**_ENGINE, "OPTIONS": {**_ENGINE["OPTIONS"], "libraries": {"reports": __name__}}}]
POST_OFFICE_TEMPLATES = [
    {"BACKEND": "post_office.template.backends.post_office.PostOfficeTemplates", "APP_DIRS": True},
]

#: Template code that reaches beyond its context: (source, what shows it worked, what the refusal names).
TEMPLATE_REACH = {
    # Any tag library of the engine: the project's own (showing any setting here) and Django's.
    "project-library": ("{% load reports %}{% setting 'SECRET_KEY' %}", settings.SECRET_KEY, "'reports'"),
    "one-tag-of-a-library": (
        "{% load setting from reports %}{% setting 'SECRET_KEY' %}",
        settings.SECRET_KEY,
        "'reports'",
    ),
    "django-library": ('{% load static %}[{% static "private.png" %}]', "[private.png]", "'static'"),
    # The whole context and every loaded module, when DEBUG is on.
    "debug": ("{% debug %}", "django.contrib.auth", "{% debug %}"),
    # Any template file the project's loaders find.
    "include": ('{% include "admin/404.html" %}', "Page not found", "{% include %}"),
    "extends": ('{% extends "admin/404.html" %}', "Page not found", "{% extends %}"),
}


def po(**extra: Any) -> override_settings:
    """POST_OFFICE with these keys on top of the test settings (which name the delivery backends)."""
    return override_settings(POST_OFFICE={**settings.POST_OFFICE, **extra})


def restricted(**extra: Any) -> override_settings:
    return po(RESTRICTED_TEMPLATES=True, **extra)


#: A stored template the mode refuses, at enqueue: Django's syntax error, or ours naming the field.
REFUSED_AT_RENDER = (TemplateSyntaxError, TemplateSyntaxInvalid)


def deliver() -> Any:
    return Worker(threads=1).run()


@override_settings(TEMPLATES=TEMPLATES)
class SecurityTestCase(TestCase):
    """Two users, and a project engine with one more tag library ('reports')."""

    def setUp(self) -> None:
        super().setUp()
        self.alice = User.objects.create_user("alice", "alice@example.com", "alice-pw")
        self.bob = User.objects.create_user("bob", "bob@example.com", "bob-pw")

    def stored(self, source: str, name: str = "attack") -> EmailTemplate:
        """A template with ``source`` as its HTML, saved with the mode off (as before a switch)."""
        with po(RESTRICTED_TEMPLATES=False):
            return EmailTemplate.objects.create(name=name, subject="Hi", html_content=source)

    def send(self, name: str = "attack", context: dict[str, Any] | None = None) -> str:
        email = mail.send("to@example.com", "from@example.com", template=name, context=context or {})
        return email.html_message


@override_settings(DEBUG=True)
class TemplateReachTest(SecurityTestCase):
    """Tags that reach beyond the context: other libraries, template files, {% debug %}."""

    def test_reachable_through_mail_send_with_the_mode_off(self):
        for key, (source, shown, _refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                self.stored(source, name=key)
                self.assertIn(shown, self.send(key))

    def test_refused_when_saved_with_the_mode_on(self):
        for key, (source, _shown, refusal) in TEMPLATE_REACH.items():
            with self.subTest(key), restricted():
                with self.assertRaisesMessage(TemplateSyntaxInvalid, refusal) as raised:
                    EmailTemplate.objects.create(name=key, html_content=source)
                self.assertEqual(list(raised.exception.errors), ["html_content"])
                self.assertIn("restricted mode (POST_OFFICE['RESTRICTED_TEMPLATES'])", str(raised.exception))
        self.assertFalse(EmailTemplate.objects.exists())

    def test_a_template_stored_before_the_switch_is_refused_at_enqueue(self):
        for key, (source, _shown, refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                self.stored(source, name=key)
                with restricted(), self.assertRaisesMessage(REFUSED_AT_RENDER, refusal):
                    self.send(key)
        self.assertFalse(Email.objects.exists())

    def test_preview_with_the_mode_off_and_on(self):
        for key, (source, shown, refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                self.stored(source, name=key)
                self.assertIn(shown, render_preview(key).html_message)
                with restricted(), self.assertRaisesMessage(REFUSED_AT_RENDER, refusal):
                    render_preview(key)

    def test_the_admin_template_form_with_the_mode_off_and_on(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        for key, (source, _shown, refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                self.assertEqual(self.post_template(f"{key}-off", source).status_code, 302)
                with restricted():
                    response = self.post_template(f"{key}-on", source)
                self.assertEqual(response.status_code, 200)
                errors = response.context["adminform"].form.errors
                self.assertEqual(list(errors), ["html_content"])
                self.assertIn(refusal, errors["html_content"][0])
        self.assertEqual(
            sorted(EmailTemplate.objects.values_list("name", flat=True)), sorted(f"{key}-off" for key in TEMPLATE_REACH)
        )

    def post_template(self, name: str, html: str) -> Any:
        prefix = "translated_templates"
        data = {
            "name": name,
            "description": "",
            "subject": "Hi",
            "content": "",
            "html_content": html,
            f"{prefix}-TOTAL_FORMS": "0",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
        }
        return self.client.post("/admin/post_office/emailtemplate/add/", data)

    def test_a_loaded_library_can_write_to_the_project_cache(self):
        self.stored("{% load cache %}{% cache 3600 note %}planted{% endcache %}")
        self.send()
        self.assertEqual(cache.get(make_template_fragment_key("note")), "planted")
        with restricted(), self.assertRaisesMessage(TemplateSyntaxInvalid, "'cache'"):
            EmailTemplate.objects.create(name="again", html_content="{% load cache %}")


@override_settings(DEBUG=True)
class DeliveryReachTest(SecurityTestCase):
    """The same tags in render_on_delivery mail, rendered by the delivery worker."""

    def test_reachable_at_delivery_with_the_mode_off(self):
        for key, (source, _shown, _refusal) in TEMPLATE_REACH.items():
            self.stored(source, name=key)
            mail.send("to@example.com", "from@example.com", template=key, render_on_delivery=True)
        self.assertEqual(deliver().sent, len(TEMPLATE_REACH))
        delivered = [message.message().as_string() for message in django_mail.outbox]
        for key, (_source, shown, _refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                self.assertTrue(any(shown in html for html in delivered), key)

    def test_refused_at_delivery_with_the_mode_on(self):
        # Queued before the switch or after it (render_on_delivery compiles nothing when queued).
        for key, (source, _shown, _refusal) in TEMPLATE_REACH.items():
            self.stored(source, name=key)
            mail.send("to@example.com", "from@example.com", template=key, render_on_delivery=True)
        with restricted():
            for key in TEMPLATE_REACH:
                mail.send("to@example.com", "from@example.com", template=key, render_on_delivery=True)
            deliver()
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(set(Email.objects.values_list("status", flat=True)), {STATUS.failed})
        for key, (_source, _shown, refusal) in TEMPLATE_REACH.items():
            with self.subTest(key):
                messages = Log.objects.filter(email__template__name=key).values_list("message", flat=True)
                self.assertEqual(len(messages), 2)
                for message in messages:
                    self.assertIn(refusal, message)


class InlineImageReachTest(SecurityTestCase):
    """``{% inline_image %}`` attaches any image of the static files or the default storage."""

    PATH = "private/id-scan.png"
    PNG = b"\x89PNG\r\n\x1a\n" + b"scan of someone's passport"

    def setUp(self) -> None:
        super().setUp()
        saved = default_storage.save(self.PATH, ContentFile(self.PNG))
        self.addCleanup(default_storage.delete, saved)
        self.source = f"{{% load post_office %}}<img src=\"{{% inline_image '{saved}' %}}\">"

    def test_reachable_with_the_mode_off(self):
        self.stored(self.source)
        email = mail.send("to@example.com", "from@example.com", template="attack")
        self.assertEqual([a.file.read() for a in email.attachments.all()], [self.PNG])

    def test_refused_with_the_mode_on_unless_listed(self):
        with restricted(), self.assertRaisesMessage(TemplateSyntaxInvalid, "'post_office'"):
            EmailTemplate.objects.create(name="attack", html_content=self.source)
        self.stored(self.source)
        with restricted(), self.assertRaisesMessage(REFUSED_AT_RENDER, "'post_office'"):
            self.send()
        # A project that lists the library gives its authors the images of those two places.
        with restricted(RESTRICTED_TEMPLATE_LIBRARIES=["post_office"]):
            self.assertIn("cid:", self.send())


class ContextReachTest(SecurityTestCase):
    """Objects in the context: every attribute, relation and argument-less method they lead to."""

    def context_attack(self, source: str, context: dict[str, Any], field: str = "context['user']") -> str:
        """Render ``source`` with the mode off; show that restricted mode refuses the context at enqueue."""
        self.stored(source)
        with restricted(), self.assertRaisesMessage(InvalidContext, field) as raised:
            self.send(context=context)
        self.assertIn("may not see in restricted mode", str(raised.exception))
        self.assertFalse(Email.objects.exists())
        with restricted(), self.assertRaisesMessage(InvalidContext, field):
            render_preview("attack", context)
        return self.send(context=context)

    def test_a_password_hash(self):
        output = self.context_attack("{{ user.password }}", {"user": self.alice})
        self.assertEqual(output, self.alice.password)

    def test_other_users_through_relations(self):
        staff = Group.objects.create(name="staff")
        staff.user_set.add(self.alice, self.bob)
        source = (
            "{% for group in user.groups.all %}{% for member in group.user_set.all %}"
            "{{ member.username }}={{ member.password }};{% endfor %}{% endfor %}"
        )
        output = self.context_attack(source, {"user": self.alice})
        self.assertIn(f"bob={self.bob.password};", output)

    def test_a_value_derived_from_the_secret_key(self):
        output = self.context_attack("{{ user.get_session_auth_hash }}", {"user": self.alice})
        self.assertEqual(output, self.alice.get_session_auth_hash())

    def test_methods_without_arguments_are_called(self):
        # Unless marked alters_data (save, delete) or do_not_call_in_templates.
        self.context_attack("{{ user.set_unusable_password }}", {"user": self.alice})
        self.assertFalse(self.alice.has_usable_password())

    def test_objects_deep_inside_the_context(self):
        self.context_attack(
            "{{ data.people.0.password }}", {"data": {"people": [self.alice]}}, "context['data']['people'][0]"
        )

    def test_the_callers_lists_and_dicts_can_be_changed(self):
        self.stored("{{ items.pop }}|{{ options.clear }}|{{ items }}")
        items, options = [1, 2], {"a": 1}
        self.assertEqual(self.send(context={"items": items, "options": options}), "2|None|[1]")
        self.assertEqual((items, options), ([1], {}))
        # Restricted: the template renders from its own copy of the data.
        items, options = [1, 2], {"a": 1}
        with restricted():
            self.assertEqual(self.send(context={"items": items, "options": options}), "2|None|[1]")
        self.assertEqual((items, options), ([1, 2], {"a": 1}))

    def test_attributes_starting_with_an_underscore_are_refused_in_both_modes(self):
        for mode in (False, True):
            with self.subTest(restricted=mode), po(RESTRICTED_TEMPLATES=mode):
                with self.assertRaisesMessage(TemplateSyntaxInvalid, "may not begin with underscores"):
                    EmailTemplate.objects.create(name="attack", html_content="{{ user._meta }}")
                with self.assertRaisesMessage(TemplateSyntaxInvalid, "may not begin with underscores"):
                    EmailTemplate.objects.create(name="attack", html_content="{{ data.x.__class__ }}")

    def test_render_on_delivery_contexts_are_json_data_in_both_modes(self):
        EmailTemplate.objects.create(name="later", html_content="{{ user.password }}")
        for mode in (False, True):
            with self.subTest(restricted=mode), po(RESTRICTED_TEMPLATES=mode):
                with self.assertRaisesMessage(InvalidContext, "context['user']"):
                    mail.send("to@example.com", template="later", context={"user": self.alice}, render_on_delivery=True)


class RestrictedModeTest(SecurityTestCase):
    """What restricted templates keep: data, Django's other tags and filters, listed libraries."""

    def test_data_renders_alike_in_both_modes(self):
        source = (
            '{{ name }} {{ count }} {{ ratio }} {{ price }} {{ day|date:"Y-m-d" }} {{ moment|date:"H:i" }} '
            '{{ flag|yesno:"y,n" }} {{ nothing|default:"-" }} {{ lazy }} {{ html }} {{ tags|join:"," }} '
            "{{ pair.1 }} {% for key, value in info.items %}{{ key }}={{ value }};{% endfor %} {{ info.a }} "
            "{{ wait }} {{ rows|length }}{% for row in rows %}{{ row.n }}{% endfor %} {{ name.upper }}"
        )
        context = {
            "name": "Ann",
            "count": 3,
            "ratio": 0.5,
            "price": decimal.Decimal("9.90"),
            "day": datetime.date(2030, 1, 2),
            "moment": datetime.datetime(2030, 1, 2, 15, 4, tzinfo=datetime.timezone.utc),
            "flag": True,
            "nothing": None,
            "lazy": gettext_lazy("Hello"),
            "html": mark_safe("<b>bold</b>"),  # noqa: S308 - a constant
            "tags": ["a", "b"],
            "pair": ("x", "y"),
            "info": {"a": 1, "b": [2]},
            "wait": datetime.timedelta(minutes=5),
            "rows": [{"n": 1}, {"n": 2}],
        }
        self.stored(source)
        off = self.send(context=context)
        with restricted():
            self.assertEqual(self.send(context=context), off)
        self.assertIn("Ann 3 0.5 9.90 2030-01-02 15:04 y - Hello <b>bold</b> a,b y a=1;b=[2]; 1", off)

    def test_djangos_other_tags_and_filters_stay(self):
        source = (
            '{% now "Y" as year %}{% url "admin:index" %} {% with n=3 %}{{ n|add:1 }}{% endwith %} '
            "{% if year %}{% cycle 'a' 'b' %}{% endif %}{% firstof missing 'first' %} "
            "{% block b %}{% filter upper %}up{% endfilter %}{% endblock %}{% templatetag openblock %}"
            "{% spaceless %}<p> </p>{% endspaceless %}{% widthratio 5 10 100 %}{% verbatim %}{{ x }}{% endverbatim %}"
        )
        with restricted():
            EmailTemplate.objects.create(name="tags", html_content=source)
            self.assertEqual(self.send("tags"), "/admin/ 4 afirst UP{%<p></p>50{{ x }}")

    def test_listed_libraries_may_be_loaded(self):
        source = '{% load i18n %}{% translate "Hello" %}'
        with restricted(), self.assertRaisesMessage(TemplateSyntaxInvalid, "lists those that may: none"):
            EmailTemplate.objects.create(name="hello", html_content=source)
        with restricted(RESTRICTED_TEMPLATE_LIBRARIES=["i18n", "l10n"]):
            EmailTemplate.objects.create(name="hello", html_content=source)
            self.assertEqual(self.send("hello"), "Hello")
            with self.assertRaisesMessage(TemplateSyntaxInvalid, "lists those that may: 'i18n', 'l10n'"):
                EmailTemplate.objects.create(name="other", html_content="{% load static %}")

    def test_a_library_the_engine_builds_in_stays_built_in_when_listed(self):
        source = "<img src=\"{% inline_image 'missing.png' %}\">"
        with override_settings(TEMPLATES=POST_OFFICE_TEMPLATES):
            with restricted(), self.assertRaisesMessage(TemplateSyntaxInvalid, "'inline_image'"):
                EmailTemplate.objects.create(name="logo", html_content=source)
            with restricted(RESTRICTED_TEMPLATE_LIBRARIES=["post_office"]):
                EmailTemplate.objects.create(name="logo", html_content=source)

    def test_an_unknown_library_is_a_configuration_error(self):
        with restricted(RESTRICTED_TEMPLATE_LIBRARIES=["nope"]):
            with self.assertRaisesMessage(ImproperlyConfigured, "names 'nope', which the template engine"):
                EmailTemplate.objects.create(name="x", content="Hi")
            self.assertEqual([m.id for m in checks.run_checks(tags=["post_office"])], ["post_office.E013"])
        with po(RESTRICTED_TEMPLATE_LIBRARIES="i18n"):
            self.assertEqual([m.id for m in checks.run_checks(tags=["post_office"])], ["post_office.E013"])
        with restricted(RESTRICTED_TEMPLATE_LIBRARIES=["i18n"]):
            self.assertEqual(checks.run_checks(tags=["post_office"]), [])

    def test_file_templates_and_a_callers_own_parts_are_not_restricted(self):
        # They are the project's code, not what the admin edits.
        with restricted():
            email = mail.send(
                "to@example.com",
                "from@example.com",
                template="file:email/welcome.html",
                context={"name": "Ann", "user": self.alice},
            )
            self.assertIn("Hello Ann", email.message)
            email = mail.send(
                "to@example.com",
                "from@example.com",
                subject="Hi {{ user.username }}",
                message="x",
                context={"user": self.alice},
            )
            self.assertEqual(email.subject, "Hi alice")

    def test_importing_template_files_is_saving(self):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "welcome.html").write_text(
                "{% block subject %}Hi{% endblock subject %}\n"
                "{% block html_body %}{% include 'admin/404.html' %}{% endblock html_body %}\n"
            )
            with restricted(), self.assertRaisesMessage(TemplateFilesError, "{% include %} is not allowed"):
                import_templates(directory)
            self.assertFalse(EmailTemplate.objects.exists())
            import_templates(directory)
        self.assertIn("Page not found", self.send("welcome"))

    def test_the_mode_takes_effect_at_once_both_ways(self):
        self.stored("Hi {{ name }}")
        self.assertEqual(self.send(context={"name": "a"}), "Hi a")
        with restricted():
            self.assertEqual(self.send(context={"name": "b"}), "Hi b")
        self.assertEqual(self.send(context={"name": "c"}), "Hi c")
