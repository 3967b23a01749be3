from django.core import mail as django_mail
from django.test import TestCase

from post_office import mail
from post_office.delivery import Worker
from post_office.models import STATUS, Email, EmailTemplate


class SmokeTest(TestCase):
    def test_send_and_deliver(self):
        EmailTemplate.objects.create(name="welcome", subject="Hi {{ name }}", content="Hello {{ name }} & co", html_content="<b>{{ name }}</b> & co")
        email = mail.send(["a@example.com"], "from@example.com", template="welcome", context={"name": "Al & Bo"})
        self.assertEqual(email.subject, "Hi Al & Bo")
        stats = Worker().run()
        self.assertEqual(stats.sent, 1)
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual(len(django_mail.outbox), 1)
        msg = django_mail.outbox[0]
        self.assertEqual(msg.body, "Hello Al & Bo & co")
        self.assertIn("Al &amp; Bo", msg.alternatives[0][0])
        self.assertEqual(Email.objects.get().logs.count(), 1)
