"""The Email changelist: who it went to, what it was, and finding a customer's mail (through the real views)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import TestCase

from post_office import mail
from post_office.models import DeliverySwitch, Email, EmailTemplate

LIST = "/admin/post_office/email/"


class EmailListTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        EmailTemplate.objects.create(name="welcome", subject="Welcome {{ name }}", content="Hi")
        self.alice = mail.send(
            ["Alice Example <alice@example.com>", "bob@example.com"],
            "shop@example.com",
            subject="Your order",
            message="m",
            cc=["carol@example.com"],
        )
        self.dave = mail.send(
            ["dave@example.com"], "shop@example.com", template="welcome", context={"name": "Dave"}, language="de"
        )
        self.erin = mail.send(["erin@example.com"], "shop@example.com", subject="Invoice", message="m", bcc=["audit@x.org"])

    def found(self, **params: str) -> set[int]:
        response = self.client.get(LIST, params)
        self.assertEqual(response.status_code, 200)
        return {email.pk for email in response.context["cl"].result_list}

    def test_columns(self):
        response = self.client.get(LIST)
        row = {email.pk: email for email in response.context["cl"].result_list}
        admin = response.context["cl"].model_admin
        self.assertEqual(admin.recipients(row[self.alice.pk]), "Alice Example <alice@example.com> +2")
        self.assertEqual(admin.recipients(row[self.dave.pk]), "dave@example.com")
        self.assertEqual(admin.backend(row[self.dave.pk]), "default")
        content = response.content.decode()
        for header in ("Template", "Backend", "Scheduled time", "Last updated", "Priority", "Status"):
            self.assertIn(header, content)
        self.assertIn("welcome", content)

    def test_search_finds_mail_by_any_recipient_sender_subject_or_message_id(self):
        self.assertEqual(self.found(q="alice@"), {self.alice.pk})
        self.assertEqual(self.found(q="Alice Example"), {self.alice.pk})
        self.assertEqual(self.found(q="carol"), {self.alice.pk})  # cc
        self.assertEqual(self.found(q="audit@x.org"), {self.erin.pk})  # bcc
        self.assertEqual(self.found(q="invoice"), {self.erin.pk})
        self.assertEqual(self.found(q="shop@example.com"), {self.alice.pk, self.dave.pk, self.erin.pk})
        message_id = Email.objects.get(pk=self.erin.pk).message_id
        if message_id:
            self.assertEqual(self.found(q=message_id.strip("<>")), {self.erin.pk})

    def test_filters_with_blank_choices_labelled(self):
        template = EmailTemplate.objects.get(name="welcome", language="")
        self.assertEqual(self.found(template__id__exact=str(template.pk)), {self.dave.pk})
        self.assertEqual(self.found(language="de"), {self.dave.pk})
        self.assertEqual(self.found(language="-"), {self.alice.pk, self.erin.pk})
        self.assertEqual(self.found(backend_alias="default"), {self.alice.pk, self.dave.pk, self.erin.pk})
        content = self.client.get(LIST).content.decode()
        self.assertIn("default", content)

    def test_no_count_of_the_whole_table(self):
        response = self.client.get(LIST, {"q": "alice"})
        self.assertFalse(response.context["cl"].show_full_result_count)
        self.assertNotIn("total", response.content.decode().split('id="changelist"')[1].split("</form>")[0].lower())

    def test_a_banner_when_delivery_is_paused(self):
        self.assertNotIn("Delivery is paused", self.client.get(LIST).content.decode())
        DeliverySwitch.set_paused(True, "maintenance")
        self.assertIn("Delivery is paused", self.client.get(LIST).content.decode())
