"""Fill a database through django-mailer 2.3.2's own API (runs under .venv-mailer's interpreter).

    .venv-mailer/bin/python tests/switch_mailer/fill_mailer.py MANIFEST.json

with MAILER_SWITCH_DB / MAILER_SWITCH_DB_NAME naming the database. It migrates, then leaves what a
django-mailer user would leave:

- sent mail: messages its send loop delivered (success logs; the messages are gone from the queue),
  one of them only at the second try (a failure, then a success);
- deferred mail with retries: its send loop against a backend that fails for down.example defers them,
  ``retry_deferred`` retries them (retry_count), and one is deferred again while the other waits;
- queued mail of every priority through send_mail, send_html_mail (with headers), mail_admins, the
  DbBackend (an EmailMultiAlternatives with cc, bcc, reply-to, alternatives and attachments: text,
  binary, an inline image and a PDF as MIME parts), make_message with its ``email`` set, and a display
  name with a comma;
- don't-send entries (one of them only after the message to it was queued, one the same address in
  other case, one that is no address), and a log of a message it did not send because of its list;
- rows a reader must refuse: a message that is not base64, one that pickles a dict, one whose pickle
  would run a command (it would create MARKER), one with an address that is not one, and a log whose
  copy of the message is corrupt.

The manifest says what each row is, as the database holds it, for the test to compare.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pickle
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "mailer_project"))
os.environ["DJANGO_SETTINGS_MODULE"] = "mailer_site.settings_mailer"

import django  # noqa: E402

django.setup()

from email.mime.application import MIMEApplication  # noqa: E402
from email.mime.image import MIMEImage  # noqa: E402

import mailer  # noqa: E402
from django.core import mail as django_mail  # noqa: E402
from django.core.mail import EmailMultiAlternatives  # noqa: E402
from django.core.management import call_command  # noqa: E402
from mailer import engine  # noqa: E402
from mailer.models import (  # noqa: E402
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    DontSendEntry,
    Message,
    MessageLog,
    make_message,
)
from mailer_site import backends  # noqa: E402

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BINARY = bytes(range(256))


class Evil:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def utc(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).isoformat()


def last_message(subject: str) -> Message:
    return next(m for m in Message.objects.order_by("-id") if m.email is not None and m.email.subject == subject)


def phase_sent_and_deferred() -> None:
    """Mail django-mailer's send loop delivers, defers and retries."""
    mailer.send_mail("Sent plain", "Delivered by django-mailer.", "shop@example.com", ["sent@example.com"])
    with_file = EmailMultiAlternatives(
        "Sent with attachment", "See the file.", "shop@example.com", ["sent2@example.com"]
    )
    with_file.attach("receipt.txt", "Receipt 42", "text/plain")
    with_file.send()
    mailer.send_mail("Flaky", "Delivered at the second try.", "shop@example.com", ["flaky@later.example"])
    mailer.send_mail("Down medium", "Never delivered by django-mailer.", "shop@example.com", ["x@down.example"])
    mailer.send_mail(
        "Down high", "Never delivered either.", "shop@example.com", ["y@down.example"], priority=PRIORITY_HIGH
    )
    backends.DOWN.update({"down.example", "later.example"})
    engine.send_all()  # Sent plain and Sent with attachment go; the other three are deferred
    Message.objects.retry_deferred()  # retry_count 1
    backends.DOWN.discard("later.example")
    engine.send_all()  # Flaky goes; the down ones are deferred again
    Message.objects.retry_deferred()  # retry_count 2
    engine.send_all(Message.objects.filter(id=last_message("Down medium").id))  # deferred a third time
    assert len(django_mail.outbox) == 3, [m.subject for m in django_mail.outbox]


def phase_queued() -> None:
    """Mail left in the queue: every priority and every entry point."""
    mailer.send_mail("High", "High priority.", "shop@example.com", ["high@example.com"], priority=PRIORITY_HIGH)
    mailer.send_mail("Medium", "Medium priority.", "shop@example.com", ["medium@example.com"], priority=PRIORITY_MEDIUM)
    mailer.send_mail("Low", "Low priority.", "shop@example.com", ["low@example.com"], priority=PRIORITY_LOW)
    mailer.send_html_mail(
        "Html",
        "Plain part.",
        "<p>HTML <b>part</b>.</p>",
        "Shop <shop@example.com>",
        ['"Doe, Jane" <jane@example.com>'],
        priority=PRIORITY_HIGH,
        headers={"X-Campaign": "spring", "Reply-To": "support@example.com"},
    )
    mailer.mail_admins("Admins", "For the admins.")
    rich = EmailMultiAlternatives(
        "Rich",
        "Text body.",
        "shop@example.com",
        ["rich@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["reply@example.com"],
        headers={"X-Order": "42"},
    )
    rich.attach_alternative('<p>HTML body <img src="cid:logo"></p>', "text/html")
    rich.attach_alternative("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    rich.attach("notes.txt", "Some notes", "text/plain")
    rich.attach("data.bin", BINARY, "application/octet-stream")
    logo = MIMEImage(GIF, "gif")
    logo.add_header("Content-ID", "<logo>")
    logo.add_header("Content-Disposition", "inline", filename="logo.gif")
    rich.attach(logo)
    pdf = MIMEApplication(PDF, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename="invoice.pdf")
    rich.attach(pdf)
    made = make_message(priority=PRIORITY_LOW)
    made.email = rich
    made.save()
    mailer.send_mail(
        "Partly listed",
        "One recipient is listed later.",
        "shop@example.com",
        ["keep@example.com", "Late.Listed@example.com"],
    )
    mailer.send_mail("All listed", "Its only recipient is listed later.", "shop@example.com", ["gone@example.com"])
    # django-mailer filters its list when mail is queued: Blocked is dropped here, Keep2 stays.
    mailer.send_mail(
        "Filtered",
        "django-mailer dropped a listed recipient.",
        "shop@example.com",
        ["blocked@example.com", "keep2@example.com"],
    )


def phase_lists_and_bad_rows(marker: str) -> tuple[list[int], list[int]]:
    now = datetime.datetime.now(datetime.timezone.utc)
    DontSendEntry.objects.create(to_address="late.listed@EXAMPLE.com", when_added=now)
    DontSendEntry.objects.create(to_address="gone@example.com", when_added=now)
    DontSendEntry.objects.create(to_address="BLOCKED@example.com", when_added=now)
    # A message django-mailer itself did not send because of its list: only its log row remains.
    dont = make_message("Not sent", "Listed.", "shop@example.com", ["nobody@example.com"], priority=PRIORITY_MEDIUM)
    MessageLog.objects.log(dont, RESULT_DONT_SEND, log_message="on the don't-send list")
    good = last_message("High")
    bad = [Message.objects.create(message_data="this is not base64 of a pickle !!")]
    bad.append(Message.objects.create(message_data=base64.encodebytes(pickle.dumps({"subject": "a dict"})).decode()))
    # Never read back here: django-mailer's own reader would run it.
    bad.append(Message.objects.create(message_data=base64.encodebytes(pickle.dumps(Evil(marker))).decode()))
    bad_address = make_message("Bad address", "x", "shop@example.com", ["not an address"], priority=PRIORITY_MEDIUM)
    bad_address.save()
    bad_log = MessageLog.objects.create(
        message_data="corrupt",
        message_id=None,
        when_added=good.when_added,
        priority=2,
        result="3",
        log_message="a log whose copy is corrupt",
    )
    return [message.id for message in bad], [bad_log.id]


def main(out: str) -> None:
    marker = os.environ["MAILER_SWITCH_MARKER"]
    call_command("migrate", verbosity=0)
    DontSendEntry.objects.create(
        to_address="Blocked@Example.com", when_added=datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)
    )
    DontSendEntry.objects.create(
        to_address="not-an-address", when_added=datetime.datetime(2024, 5, 2, tzinfo=datetime.timezone.utc)
    )
    phase_sent_and_deferred()
    phase_queued()
    bad_messages, bad_logs = phase_lists_and_bad_rows(marker)
    messages = []
    for message in Message.objects.order_by("id"):
        email = message.email if message.id not in bad_messages else None
        messages.append(
            {
                "id": message.id,
                "subject": email.subject if email is not None else None,
                "priority": message.priority,
                "retry_count": message.retry_count,
                "when_added": utc(message.when_added),
            }
        )
    logs = []
    for log in MessageLog.objects.order_by("id"):
        email = log.email if log.id not in bad_logs else None
        logs.append(
            {
                "id": log.id,
                "subject": email.subject if email is not None else None,
                "result": log.result,
                "message_id": log.message_id,
                "when_added": utc(log.when_added),
                "when_attempted": utc(log.when_attempted),
                "log_message": log.log_message,
            }
        )
    entries = [
        {"id": e.id, "to_address": e.to_address, "when_added": utc(e.when_added)}
        for e in DontSendEntry.objects.order_by("id")
    ]
    sent = [
        {"subject": m.subject, "to": m.to, "message_id": m.extra_headers.get("Message-ID")} for m in django_mail.outbox
    ]
    manifest = {
        "bad_messages": bad_messages,
        "bad_logs": bad_logs,
        "messages": messages,
        "logs": logs,
        "entries": entries,
        "sent_by_mailer": sent,
        "version": mailer.__version__,
    }
    Path(out).write_text(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
