"""``mail_templates export`` / ``import``: database templates as block-format files, round trip."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management import CommandError, call_command
from django.db.models import QuerySet
from django.test import TestCase, override_settings

from post_office import mail
from post_office.models import EmailTemplate
from post_office.template_files import (
    TemplateFilesError,
    export_templates,
    format_template_file,
    import_templates,
    parse_template_file,
)
from tests.helpers import queueing

WELCOME_FILE = """\
{% comment "description" %}Sent after sign-up{% endcomment %}

{% block subject %}Welcome, {{ name }}{% endblock subject %}

{% block text_body %}
Hello {{ name }},
thanks for joining.
{% endblock text_body %}

{% block html_body %}<p>Hello {{ name }}</p>{% endblock html_body %}
"""


def fields(template: EmailTemplate) -> tuple[Any, ...]:
    return (template.description, template.subject, template.content, template.html_content, template.last_updated)


class TemplateFilesTests(TestCase):
    def setUp(self) -> None:
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        self.dir = Path(temporary.name)
        self.welcome = EmailTemplate.objects.create(
            name="welcome",
            description="Sent after sign-up",
            subject="Welcome, {{ name }}",
            content="Hello {{ name }},\nthanks for joining.",
            html_content="<p>Hello {{ name }}</p>",
        )
        self.welcome_de = self.welcome.translated_templates.create(
            language="de", subject="Willkommen, {{ name }}", content="Hallo {{ name }}", html_content="<p>Hallo</p>"
        )
        self.reset = EmailTemplate.objects.create(name="accounts/reset", subject="Reset", content="Go to {{ url }}")

    def command(self, *args: str) -> str:
        out = io.StringIO()
        call_command("mail_templates", *args, stdout=out)
        return out.getvalue()

    def snapshot(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        return {(t.name, t.language): fields(t) for t in EmailTemplate.objects.all()}

    def write(self, relative: str, text: str) -> None:
        path = self.dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    # -- export ----------------------------------------------------------------

    def test_export_writes_one_file_per_template_and_language(self):
        output = self.command("export", str(self.dir))
        files = sorted(p.relative_to(self.dir).as_posix() for p in self.dir.rglob("*") if p.is_file())
        self.assertEqual(files, ["accounts/reset.html", "welcome.de.html", "welcome.html"])
        self.assertEqual((self.dir / "welcome.html").read_text(), WELCOME_FILE)
        self.assertEqual(
            (self.dir / "accounts/reset.html").read_text(),
            "{% block subject %}Reset{% endblock subject %}\n\n"
            "{% block text_body %}Go to {{ url }}{% endblock text_body %}\n\n"
            "{% block html_body %}{% endblock html_body %}\n",
        )
        self.assertIn("Exported 3 template(s)", output)
        self.assertIn("3 written, 0 unchanged", output)
        # A second export changes no file.
        self.assertIn("0 written, 3 unchanged", self.command("export", str(self.dir)))

    def test_export_of_some_names(self):
        self.command("export", str(self.dir), "--name", "welcome")
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["welcome.de.html", "welcome.html"])
        with self.assertRaisesMessage(CommandError, "'nope' is not the name of an EmailTemplate"):
            self.command("export", str(self.dir), "--name", "nope")

    def test_export_refuses_names_that_cannot_be_files_and_writes_nothing(self):
        # Saving refuses such names now; rows an older version (or raw SQL) wrote may still hold them.
        QuerySet.bulk_create(
            EmailTemplate.objects.all(),
            [EmailTemplate(name="shop.de", subject="x"), EmailTemplate(name="../escape", subject="x")],
        )
        EmailTemplate.objects.create(name="odd", description="ends the {% endcomment %} early", subject="x")
        with self.assertRaises(CommandError) as caught:
            self.command("export", str(self.dir))
        message = str(caught.exception)
        self.assertIn("shop.de: the name ends in '.de'", message)
        self.assertIn("../escape: each '/'-separated part", message)
        self.assertIn("odd: its text cannot be written as blocks and read back unchanged", message)
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_values_survive_the_trip_exactly(self):
        awkward = [
            "",
            "one line",
            "\nstarts with a line break",
            "ends with a line break\n",
            "windows\r\nline endings\r\n",
            "{% block inner %}nested{% endblock %} and {% comment %}{% endblock %}{% endcomment %}",
            "{% verbatim %}{% endblock %}{{ raw }}{% endverbatim %}",
            "  spaces around  ",
            "Grüße ☃ 日本語",
        ]
        for value in awkward:
            with self.subTest(value=value):
                values = {
                    "description": value.replace("endcomment", "end"),
                    "subject": value.replace("\n", " "),
                    "content": value,
                    "html_content": value,
                }
                self.assertEqual(parse_template_file(format_template_file(values)), values)

    # -- import ----------------------------------------------------------------

    def test_import_of_an_unchanged_export_changes_nothing(self):
        self.command("export", str(self.dir))
        before = self.snapshot()
        output = self.command("import", str(self.dir))
        self.assertEqual(output.strip(), "No changes: 3 template(s) are up to date.")
        self.assertEqual(self.snapshot(), before)

    def test_round_trip_changes_only_the_edited_file(self):
        self.command("export", str(self.dir))
        before = self.snapshot()
        path = self.dir / "welcome.de.html"
        path.write_text(path.read_text().replace("Willkommen", "Herzlich willkommen"), encoding="utf-8")
        output = self.command("import", str(self.dir))
        self.assertIn("Updated welcome [de] from welcome.de.html (subject)", output)
        self.assertIn("Imported: 0 created, 1 updated, 2 unchanged.", output)
        after = self.snapshot()
        self.assertEqual(
            {k: v for k, v in after.items() if k != ("welcome", "de")},
            {k: v for k, v in before.items() if k != ("welcome", "de")},
        )
        self.welcome_de.refresh_from_db()
        self.assertEqual(self.welcome_de.subject, "Herzlich willkommen, {{ name }}")
        self.assertEqual(self.welcome_de.content, "Hallo {{ name }}")
        self.assertEqual(self.welcome_de.default_template, self.welcome)
        # Sending uses the new text at once.
        with queueing():
            email_obj = mail.send(["to@example.com"], template="welcome", language="de", context={"name": "Ann"})
        self.assertEqual(email_obj.subject, "Herzlich willkommen, Ann")

    def test_dry_run_shows_a_diff_per_field_and_writes_nothing(self):
        self.command("export", str(self.dir))
        before = self.snapshot()
        text = (self.dir / "welcome.html").read_text()
        (self.dir / "welcome.html").write_text(
            text.replace("thanks for joining.", "thanks for joining us.").replace("Sent after sign-up", "First email"),
            encoding="utf-8",
        )
        self.write(
            "newsletter.html", "{% block subject %}News{% endblock %}{% block html_body %}<p>Hi</p>{% endblock %}"
        )
        output = self.command("import", str(self.dir), "--dry-run")
        self.assertIn("Would update welcome from welcome.html (description, content)", output)
        self.assertIn("--- database: welcome content\n+++ welcome.html: content\n", output)
        self.assertIn("-thanks for joining.\n+thanks for joining us.\n", output)
        self.assertIn("-Sent after sign-up\n", output)
        self.assertIn("+First email\n", output)
        self.assertIn("Would create newsletter from newsletter.html", output)
        self.assertIn("Dry run: 1 to create, 1 to update, 2 unchanged; nothing was written.", output)
        self.assertEqual(self.snapshot(), before)
        self.assertFalse(EmailTemplate.objects.filter(name="newsletter").exists())

    def test_import_creates_templates_and_translations(self):
        self.write(
            "news/weekly.html",
            '{% comment "description" %}\nEvery Monday\n{% endcomment %}\n'
            "{% block subject %}Weekly{% endblock %}\n{% block text_body %}Hi {{ name }}{% endblock %}\n",
        )
        self.write(
            "news/weekly.pt-br.html", "{% block subject %}Semanal{% endblock %}{% block text_body %}Oi{% endblock %}"
        )
        self.write(
            "welcome.fr.html",
            "{% block subject %}Bienvenue{% endblock %}{% block html_body %}<p>Salut</p>{% endblock %}",
        )
        output = self.command("import", str(self.dir))
        self.assertIn("Imported: 3 created, 0 updated, 0 unchanged.", output)
        weekly = EmailTemplate.objects.get(name="news/weekly", language="")
        self.assertEqual(
            (weekly.description, weekly.subject, weekly.content, weekly.html_content),
            ("Every Monday", "Weekly", "Hi {{ name }}", ""),
        )
        self.assertEqual(EmailTemplate.objects.get(name="news/weekly", language="pt-br").default_template, weekly)
        self.assertEqual(EmailTemplate.objects.get(name="welcome", language="fr").default_template, self.welcome)
        self.assertIn("No changes", self.command("import", str(self.dir)))

    def test_every_file_is_checked_before_anything_is_written(self):
        self.command("export", str(self.dir))
        before = self.snapshot()
        # One good change that must not be written because other files are bad.
        (self.dir / "welcome.html").write_text(WELCOME_FILE.replace("Welcome,", "Hi,"), encoding="utf-8")
        self.write(
            "broken.html",
            "{% block subject %}ok{% endblock %}\n\n{% block text_body %}\nfine\n{% if %}\n{% endblock %}",
        )
        self.write("nosubject.html", "{% block text_body %}x{% endblock %}")
        self.write("nobody.html", "{% block subject %}x{% endblock %}")
        self.write("welcome.es.html", "{% block subject %}Hola{% endblock %}{% block text_body %}x{% endblock %}")
        self.write(
            "outside.html", "{% block subject %}x{% endblock %}\nstray text\n{% block text_body %}x{% endblock %}"
        )
        self.write(
            "loads.html", "{% load i18n %}{% block subject %}x{% endblock %}{% block text_body %}x{% endblock %}"
        )
        self.write("typo.html", "{% block subject %}x{% endblock %}{% block html_bdy %}x{% endblock %}")
        self.write("unclosed.html", "{% block subject %}x{% endblock %}{% block text_body %}x")
        self.write("orphan.de.html", "{% block subject %}x{% endblock %}{% block text_body %}x{% endblock %}")
        (self.dir / "latin1.html").write_bytes("{% block subject %}Grüße{% endblock %}".encode("latin-1"))
        with self.assertRaises(CommandError) as caught:
            self.command("import", str(self.dir))
        message = str(caught.exception)
        self.assertTrue(message.startswith("Nothing was written; "), message)
        for expected in (
            "broken.html, line 5: content: Unexpected end of expression in if tag.",
            "nosubject.html, line 1: there is no {% block subject %}",
            "nobody.html, line 1: there is neither a {% block text_body %} nor a {% block html_body %}",
            "welcome.es.html, line 1: language 'es' is not in settings.LANGUAGES",
            "outside.html, line 1: text outside the blocks: 'stray text'",
            "loads.html, line 1: {% load i18n %} outside the blocks",
            "typo.html, line 1: {% block html_bdy %} is not one of the blocks subject, text_body, html_body",
            "unclosed.html, line 1: {% block text_body %} has no {% endblock %}",
            "latin1.html, line 1: is not UTF-8 text",
        ):
            self.assertIn(expected, message)
        self.assertEqual(self.snapshot(), before)
        # The translation without a base template is found once the files are otherwise fine.
        for name in ("broken", "nosubject", "nobody", "welcome.es", "outside", "loads", "typo", "unclosed", "latin1"):
            os.remove(self.dir / f"{name}.html")
        with self.assertRaisesMessage(
            CommandError, "orphan.de.html: a translation of 'orphan', which has no base template"
        ):
            self.command("import", str(self.dir))
        self.assertEqual(self.snapshot(), before)

    def test_import_refuses_reserved_names(self):
        self.write("file:x.html", "{% block subject %}x{% endblock %}{% block text_body %}x{% endblock %}")
        with self.assertRaises(TemplateFilesError) as caught:
            import_templates(self.dir)
        self.assertIn("reserved for file templates", str(caught.exception))

    def test_missing_directory(self):
        with self.assertRaisesMessage(CommandError, "is not a directory"):
            self.command("import", str(self.dir / "nope"))

    def test_exported_files_work_as_file_templates(self):
        export_templates(self.dir)
        with queueing():
            from_db = mail.send(["to@example.com"], template="welcome", language="de", context={"name": "Ann"})
            templates = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [str(self.dir)]}]
            with override_settings(TEMPLATES=templates):
                from_file = mail.send(
                    ["to@example.com"], template="file:welcome.html", language="de", context={"name": "Ann"}
                )
        self.assertEqual(
            (from_file.subject, from_file.message, from_file.html_message),
            (from_db.subject, from_db.message, from_db.html_message),
        )
