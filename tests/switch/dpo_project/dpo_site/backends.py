"""The backend django-post_office delivers through while the database is filled."""

from smtplib import SMTPRecipientsRefused

from django.core.mail.backends.locmem import EmailBackend

#: Recipients at this domain are refused, so django-post_office's own delivery fails, requeues and logs.
REFUSED_DOMAIN = "refused.example"


class RefusingBackend(EmailBackend):
    """Keeps mail in memory like locmem; refuses a message with any recipient at REFUSED_DOMAIN."""

    def send_messages(self, messages):
        for message in messages:
            refused = [r for r in message.recipients() if r.rpartition("@")[2].rstrip(">") == REFUSED_DOMAIN]
            if refused:
                raise SMTPRecipientsRefused({r: (550, b"5.1.1 No such mailbox here") for r in refused})
        return super().send_messages(messages)
