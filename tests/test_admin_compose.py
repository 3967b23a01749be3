"""Composing and editing mail in the admin goes through mail.send's validation and rendering (real views)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core import mail as django_mail
from django.test import TestCase, override_settings

from post_office import mail
from post_office.choices import PRIORITY, STATUS
from post_office.models import Email, EmailTemplate, Log

ADD = "/admin/post_office/email/add/"


def change_url(email: Email) -> str:
    return f"/admin/post_office/email/{email.pk}/change/"


class ComposeTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def post(self, url: str = ADD, **fields: Any) -> Any:
        data = {
            "from_email": "sender@example.com",
            "to": "alice@example.com",
            "cc": "",
            "bcc": "",
            "template": "",
            "language": "",
            "context": "",
            "subject": "Hello",
            "message": "Body",
            "html_message": "",
            "headers": "",
            "priority": str(PRIORITY.medium),
            "backend_alias": "",
            "logs-TOTAL_FORMS": "0",
            "logs-INITIAL_FORMS": "0",
            "logs-MIN_NUM_FORMS": "0",
            "logs-MAX_NUM_FORMS": "1000",
        }
        data.update(fields)
        return self.client.post(url, data)

    def errors(self, response: Any) -> dict[str, list[str]]:
        self.assertEqual(response.status_code, 200, "the form was accepted")
        form = response.context["adminform"].form
        return {name or "__all__": list(errors) for name, errors in form.errors.items()}

    def test_addresses_are_plain_fields_one_per_line_never_split_on_commas(self):
        response = self.post(to='Alice Doe <alice@example.com>\n"Doe, Bob" <bob@example.com>')
        self.assertEqual(response.status_code, 302)
        email = Email.objects.get()
        self.assertEqual(email.to, ["Alice Doe <alice@example.com>", '"Doe, Bob" <bob@example.com>'])
        page = self.client.get(change_url(email)).content.decode()
        self.assertIn("Alice Doe &lt;alice@example.com&gt;\n&quot;Doe, Bob&quot; &lt;bob@example.com&gt;", page)
        self.assertNotIn("[&quot;", page, "addresses are shown as lines, not as JSON")

    def test_what_the_admin_stores_is_what_mail_send_stores(self):
        EmailTemplate.objects.create(
            name="welcome", subject="Hi {{ name }}", content="Dear {{ name }},", html_content="<p>{{ name }}</p>"
        )
        self.assertEqual(
            self.post(template="welcome", context='{"name": "Ann <b>"}', subject="", message="").status_code, 302
        )
        composed = Email.objects.get()
        sent = mail.send("alice@example.com", "sender@example.com", template="welcome", context={"name": "Ann <b>"})
        for field in ("subject", "message", "html_message", "from_email", "to", "template_id", "priority", "status"):
            self.assertEqual(getattr(composed, field), getattr(sent, field), field)
        self.assertEqual(composed.message_id is None, sent.message_id is None)

    def test_headers_are_name_value_lines(self):
        self.assertEqual(self.post(headers="Reply-To: help@example.com\nX-Campaign: winter").status_code, 302)
        self.assertEqual(Email.objects.get().headers, {"Reply-To": "help@example.com", "X-Campaign": "winter"})

    def test_bad_values_are_form_errors_on_their_field_and_nothing_is_stored(self):
        cases = {
            "to": {"to": "not an address"},
            "cc": {"cc": "a@example.com, b@example.com"},
            "from_email": {"from_email": "Evil\x0bX: 1 <sender@example.com>"},
            "subject": {"subject": "Hi\u2028Bcc: victim@example.com"},
            "headers": {"headers": "X-A: 1\nBcc: victim@example.com"},
            "context": {"context": '["not", "a", "dict"]'},
            "template": {"template": "no-such-template", "subject": "", "message": ""},
            "backend_alias": {"backend_alias": "nope"},
        }
        for field, fields in cases.items():
            with self.subTest(field):
                errors = self.errors(self.post(**fields))
                self.assertIn(field, errors)
        self.assertEqual(Email.objects.count(), 0)

    def test_a_header_line_without_a_colon_is_an_error_with_its_line(self):
        errors = self.errors(self.post(headers="X-Ok: 1\nnot a header"))
        self.assertIn("Line 2", " ".join(errors["headers"]))

    def test_a_template_and_a_subject_together_are_refused_as_mail_send_refuses_them(self):
        EmailTemplate.objects.create(name="welcome", subject="Hi", content="Body")
        errors = self.errors(self.post(template="welcome"))
        self.assertIn("subject", errors)

    def test_a_syntax_error_with_a_context_is_shown_at_the_field_with_its_line(self):
        errors = self.errors(self.post(context="{}", message="line one\n{% if %}"))
        self.assertIn("line 2", " ".join(errors["message"]))
        self.assertFalse(Email.objects.exists())

    def test_render_on_delivery_keeps_the_template_and_context(self):
        EmailTemplate.objects.create(name="welcome", subject="Hi {{ name }}", content="Dear {{ name }}")
        response = self.post(
            template="welcome", context='{"name": "Ann"}', render_on_delivery="on", subject="", message=""
        )
        self.assertEqual(response.status_code, 302)
        email = Email.objects.get()
        self.assertEqual((email.subject, email.context, email.template.name), ("", {"name": "Ann"}, "welcome"))
        # The change form shows it as it was composed.
        form = self.client.get(change_url(email)).context["adminform"].form
        self.assertEqual((form.initial["template"], form.initial["render_on_delivery"]), ("welcome", True))

    def test_an_email_needs_a_recipient(self):
        self.assertIn("to", self.errors(self.post(to="")))

    def test_a_time_that_overflows_in_utc_is_a_form_error(self):
        with override_settings(TIME_ZONE="America/New_York"):
            errors = self.errors(self.post(expires_at_0="9999-12-31", expires_at_1="23:00:00"))
        self.assertIn("years 1 to 9999", " ".join(errors["expires_at"]))
        self.assertFalse(Email.objects.exists())

    def test_priority_now_is_delivered_when_the_admin_commits(self):
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.post(priority=str(PRIORITY.now)).status_code, 302)
        self.assertEqual(Email.objects.get().status, STATUS.sent)
        self.assertEqual(len(django_mail.outbox), 1)


class EditQueuedTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.email = mail.send(
            "alice@example.com", "sender@example.com", subject="Old", message="Old body", headers={"X-A": "1"}
        )
        Log.objects.create(email=self.email, status=STATUS.failed, exception_type="SMTPServerDisconnected")

    def post(self, **changes: str) -> Any:
        form = self.client.get(change_url(self.email)).context["adminform"].form
        data = {name: form[name].value() for name in form.fields}
        data = {name: ("" if value is None else value) for name, value in data.items()}
        data["to"] = "\n".join(data["to"]) if isinstance(data["to"], list) else data["to"]
        data["headers"] = form.fields["headers"].prepare_value(data["headers"])
        data.pop("scheduled_time", None), data.pop("expires_at", None)
        data.pop("render_on_delivery", None)
        data.update(
            {
                "logs-TOTAL_FORMS": "1",
                "logs-INITIAL_FORMS": "1",
                "logs-MIN_NUM_FORMS": "0",
                "logs-MAX_NUM_FORMS": "1000",
                "logs-0-id": str(self.email.logs.get().pk),
                "logs-0-email": str(self.email.pk),
            }
        )
        data.update(changes)
        return self.client.post(change_url(self.email), data)

    def test_an_edit_replaces_the_content_and_keeps_the_history(self):
        response = self.post(to="bob@example.com", subject="New")
        self.assertEqual(response.status_code, 302, response.content[:3000])
        edited = Email.objects.get()
        self.assertEqual((edited.pk, edited.to, edited.subject), (self.email.pk, ["bob@example.com"], "New"))
        self.assertEqual(edited.message_id, self.email.message_id, "an edit keeps the Message-ID")
        self.assertEqual(edited.logs.count(), 1, "the attempts stay")
        self.assertEqual(edited.headers, {"X-A": "1"})

    def test_an_email_claimed_meanwhile_is_not_overwritten(self):
        Email.objects.filter(pk=self.email.pk).update(status=STATUS.sending, claimed_by="worker-1")
        self.client.get(change_url(self.email))
        response = self.post(subject="New")
        self.assertNotEqual(Email.objects.get().subject, "New")
        self.assertIn(response.status_code, (200, 302, 403))

    def test_the_form_refuses_an_email_claimed_after_the_page_was_loaded(self):
        from post_office.admin.compose import EmailForm

        loaded = Email.objects.get(pk=self.email.pk)  # the admin read it while it was queued
        Email.objects.filter(pk=self.email.pk).update(status=STATUS.sending, claimed_by="worker-1")
        form = EmailForm(
            instance=loaded, data={"to": "bob@example.com", "subject": "New", "priority": str(PRIORITY.medium)}
        )
        self.assertFalse(form.is_valid())
        self.assertIn("claimed for delivery", " ".join(form.non_field_errors()))

    def test_store_edit_leaves_an_email_claimed_between_the_check_and_the_save(self):
        from post_office.admin.compose import EmailForm
        from post_office.enqueue.store import store_edit

        form = EmailForm(
            instance=Email.objects.get(pk=self.email.pk),
            data={"to": "bob@example.com", "subject": "New", "priority": str(PRIORITY.medium)},
        )
        self.assertTrue(form.is_valid(), form.errors)
        Email.objects.filter(pk=self.email.pk).update(status=STATUS.sent)
        self.assertFalse(store_edit(form.instance, form.prepared))
        self.assertEqual(Email.objects.get().subject, "Old")
