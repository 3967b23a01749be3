"""The German locale: complete, compiled as committed, and used by the admin and the package's messages."""

from __future__ import annotations

import gettext
from pathlib import Path

import polib
import pytest
from django.contrib.auth.models import User
from django.test import TestCase
from django.utils import translation

from post_office import mail
from post_office.choices import STATUS

LOCALE = Path(__file__).resolve().parent.parent / "post_office" / "locale"
CATALOGUES = sorted(LOCALE.glob("*/LC_MESSAGES/*.po"))


def test_there_is_a_german_catalogue():
    assert LOCALE / "de" / "LC_MESSAGES" / "django.po" in CATALOGUES


@pytest.mark.parametrize("po_path", CATALOGUES, ids=lambda path: f"{path.parent.parent.name}/{path.name}")
def test_every_string_is_translated_and_the_compiled_file_agrees(po_path: Path):
    catalogue = polib.pofile(str(po_path))
    missing = [entry.msgid for entry in catalogue if not entry.obsolete and not entry.translated()]
    assert not missing, f"{len(missing)} untranslated or fuzzy strings in {po_path}, e.g. {missing[:5]}"
    mo_path = po_path.with_suffix(".mo")
    assert mo_path.exists(), f"{mo_path} is missing: run 'make messages'"
    with open(mo_path, "rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in catalogue:
        if entry.obsolete:
            continue
        context = entry.msgctxt
        if entry.msgid_plural:
            for count, index in ((1, 0), (2, 1), (5, 1)):
                got = (
                    compiled.npgettext(context, entry.msgid, entry.msgid_plural, count)
                    if context
                    else compiled.ngettext(entry.msgid, entry.msgid_plural, count)
                )
                assert got == entry.msgstr_plural[index], f"{mo_path} is older than {po_path}: {entry.msgid!r}"
        else:
            got = compiled.pgettext(context, entry.msgid) if context else compiled.gettext(entry.msgid)
            assert got == entry.msgstr, f"{mo_path} is older than {po_path}: {entry.msgid!r}"


def test_placeholders_are_kept_in_every_translation():
    import re

    placeholder = re.compile(r"%\((\w+)\)[sd]|%[sd]|\{[^}]*\}")
    for po_path in CATALOGUES:
        for entry in polib.pofile(str(po_path)):
            if entry.obsolete or not entry.msgstr:
                continue
            assert sorted(placeholder.findall(entry.msgid)) == sorted(placeholder.findall(entry.msgstr)), (
                f"{po_path.name}: placeholders differ in {entry.msgid!r} -> {entry.msgstr!r}"
            )


class GermanAdminTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def test_the_email_list_speaks_german(self):
        email = mail.send("anna@example.com", "shop@example.com", subject="Hallo", message="Hi")
        email.status = STATUS.failed
        email.save()
        with translation.override("de"):
            page = self.client.get("/admin/post_office/email/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
            self.assertIn(str(STATUS.failed.label), page)
            self.assertNotEqual(str(STATUS.failed.label), "failed")
            response = self.client.post(
                "/admin/post_office/email/",
                {"action": "requeue", "_selected_action": [str(email.pk)], "post": "yes"},
                follow=True,
            )
        text = " ".join(str(message) for message in response.context["messages"])
        self.assertNotIn("will be retried", text)
        self.assertTrue(text)

    def test_the_package_messages_are_german(self):
        from post_office.choices import PRIORITY

        with translation.override("de"):
            self.assertNotEqual(str(PRIORITY.high.label), "high")
            self.assertNotEqual(str(STATUS.queued.label), "queued")
