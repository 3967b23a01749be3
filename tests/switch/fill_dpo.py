"""Fill a database the way a django-post_office user's would be, with django-post_office itself.

Runs under .venv-dpo's interpreter (django-post_office 3.x installed as ``post_office``), with the
project in tests/switch/dpo_project (its settings read DPO_SWITCH_* from the environment)::

    DPO_SWITCH_DB=postgres DPO_SWITCH_DB_NAME=dposwitch_x DPO_SWITCH_MEDIA_ROOT=/tmp/m \
        .venv-dpo/bin/python tests/switch/fill_dpo.py manifest.json

It migrates the empty database with django-post_office's migrations, fills it through
django-post_office's own API (mail.send, send_many, create, EmailTemplate, attachments, its
send_queued and dispatch against a backend that refuses some recipients, the models for webhook
statuses), gives every row a date in the past, and writes a JSON manifest of every row of every
post_office and shop table as the database holds them, plus what django-post_office would deliver next.

``--bulk N`` adds N emails of history (sent or failed, each with a log, some sharing attachments), written
with bulk_create after the rest: a database big enough that its conversion can be interrupted
(tests/switch/test_dpo_kill.py).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import sys
from importlib.metadata import distribution, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "dpo_project"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpo_site.settings")

import django  # noqa: E402

django.setup()

from django.core.files.base import ContentFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Campaign, Order  # noqa: E402

from post_office import mail  # noqa: E402
from post_office.models import Attachment, Email, EmailTemplate, Log  # noqa: E402

# django-post_office logs each refused delivery with a traceback: expected here, and noise in the test's output.
logging.getLogger("post_office").disabled = True

DPO_VERSION = version("django-post_office")
VERSION = tuple(int(part) for part in DPO_VERSION.split(".")[:2])
UTC = datetime.timezone.utc
#: Every row is dated from here on, an hour apart, with microseconds (which every database must keep).
HISTORY = datetime.datetime(2024, 1, 15, 8, 30, 0, 123456, tzinfo=UTC)

#: A display name with a comma: django-post_office stores it inside its comma-separated text.
DOE = '"Doe, John" <john@example.com>'
ROE = '"Roe, Richard" <richard@example.com>'
PDF = b"%PDF-1.4\n% an invoice\n" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200, 256)) * 8
NOTES = "Grüße aus dem Lager: order notes\n".encode()
CSV = "sku;größe;anzahl\nA-1;XL;2\n".encode()


class Filler:
    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.recipients: dict[int, dict[str, list[str]]] = {}
        self.attachment_labels: dict[str, int] = {}
        self.template_labels: dict[str, int] = {}

    def send(self, label: str, **kwargs) -> Email:
        """mail.send, remembering the recipients as the caller gave them."""
        email = mail.send(**kwargs)
        self.remember(label, email, kwargs)
        return email

    def remember(self, label: str, email: Email, kwargs: dict) -> None:
        self.labels[label] = email.pk
        self.recipients[email.pk] = {field: _as_list(kwargs.get(key)) for field, key in RECIPIENT_ARGS.items()}

    # -- templates --------------------------------------------------------------------------------

    def templates(self) -> None:
        welcome = EmailTemplate.objects.create(
            name="welcome",
            description="Sent after sign-up",
            subject="Welcome {{ name }}",
            content="Hi {{ name }}, your code is {{ code }}.",
            html_content="<p>Hi <b>{{ name }}</b>, your code is {{ code }}.</p>",
        )
        welcome_de = welcome.translated_templates.create(
            language="de",
            subject="Willkommen {{ name }}",
            content="Hallo {{ name }}, dein Code ist {{ code }}.",
            html_content="<p>Hallo <b>{{ name }}</b>, dein Code ist {{ code }}.</p>",
        )
        receipt = EmailTemplate.objects.create(
            name="order_receipt",
            description="Receipt of an order",
            subject="Your order {{ number }}",
            content="Order {{ number }}: {{ total }} EUR",
        )
        receipt_de = receipt.translated_templates.create(
            language="de", subject="Ihre Bestellung {{ number }}", content="Bestellung {{ number }}: {{ total }} EUR"
        )
        newsletter = EmailTemplate.objects.create(
            name="newsletter", subject="News for {{ month }}", html_content="<h1>News for {{ month }}</h1>"
        )
        for label, template in [
            ("welcome", welcome),
            ("welcome_de", welcome_de),
            ("order_receipt", receipt),
            ("order_receipt_de", receipt_de),
            ("newsletter", newsletter),
        ]:
            self.template_labels[label] = template.pk

    # -- history: mail django-post_office already delivered, or tried to ---------------------------

    def history(self) -> None:
        sent = self.send(
            "sent",
            recipients=[DOE, "jane@example.com"],
            cc=[ROE],
            bcc=["audit@example.com"],
            sender="Shop <shop@example.com>",
            subject="Your invoice A-1001",
            message="Please find the invoice attached.",
            html_message="<p>Please find the invoice attached.</p>",
            headers={"X-Shop-Order": "A-1001", "Reply-To": "billing@example.com"},
            attachments={"invoice.pdf": {"file": ContentFile(PDF), "mimetype": "application/pdf"}},
        )
        self.attachment_labels["invoice"] = sent.attachments.get().pk
        self.send(
            "failed",
            recipients=["nobody@refused.example"],
            subject="Never arrives",
            message="Refused three times.",
            attachments={"notes.txt": ContentFile(NOTES)},
        )
        self.attachment_labels["notes"] = Email.objects.get(pk=self.labels["failed"]).attachments.get().pk
        self.send("requeued_due", recipients=["later@refused.example"], subject="Retried soon", message="Once more.")
        self.send(
            "requeued_later", recipients=["wait@refused.example"], subject="Retried later", message="Wait for it."
        )
        # django-post_office's own delivery: sent, requeued (number_of_retries 1), then requeued again and failed.
        mail.send_queued()
        self.make_due("failed")
        mail.send_queued()
        self.make_due("failed")
        mail.send_queued()
        # Some time passes: one requeued email is due again, the other still waits for its retry time.
        self.make_due("requeued_due")
        # priority 'now' is delivered (or fails) inside send().
        self.send("now_sent", recipients=["now@example.com"], subject="Right away", message="Now.", priority="now")
        self.send(
            "now_failed", recipients=["now@refused.example"], subject="Right away, refused", message=".", priority="now"
        )

    def make_due(self, label: str) -> None:
        Email.objects.filter(pk=self.labels[label]).update(scheduled_time=timezone.now() - datetime.timedelta(hours=1))

    def webhook_statuses(self) -> None:
        """What an ESP webhook handler records: a Log per event and the email's best status (3.10 on)."""
        if not any(field.name == "recipient_delivery_status" for field in Email._meta.get_fields()):
            return
        statuses = [10, 20, 30, 40, 50, 60, 65, 70, 80, 90]
        targets = ["sent", "now_sent"]
        for index, status in enumerate(statuses):
            email = Email.objects.get(pk=self.labels[targets[index % 2]])
            email.logs.create(status=status, message=f"webhook event {status}", exception_type="")
        Email.objects.filter(pk=self.labels["sent"]).update(recipient_delivery_status=30)
        Email.objects.filter(pk=self.labels["now_sent"]).update(recipient_delivery_status=70)
        Email.objects.filter(pk=self.labels["failed"]).update(recipient_delivery_status=60)

    # -- the queue: mail waiting for the next send_queued_mail -------------------------------------

    def queue(self, now: datetime.datetime) -> None:
        queued = self.send(
            "queued_high",
            recipients=[DOE, "jane@example.com"],
            cc=[ROE, "ops@example.com"],
            bcc=['"Audit, Team" <audit@example.com>'],
            sender='"Shop, Berlin" <shop@example.com>',
            subject="Grüße: your order A-1002 ✓",
            message="Plain text body with ümlauts.",
            html_message="<p>HTML body with <i>ümlauts</i>.</p>",
            headers={"X-Shop-Order": "A-1002", "X-Tag": "Grüße"},
            priority="high",
            attachments={
                "logo.png": {
                    "file": ContentFile(PNG),
                    "mimetype": "image/png",
                    "headers": {
                        "Content-ID": "<logo@shop.example>",
                        "Content-Disposition": 'inline; filename="logo.png"',
                    },
                },
                "Größe übersicht.csv": {"file": ContentFile(CSV), "mimetype": "text/csv"},
            },
        )
        for attachment in queued.attachments.all():
            self.attachment_labels["logo" if attachment.name == "logo.png" else "sizes"] = attachment.pk
        # One attachment row shared by several emails: the invoice goes out again with this one.
        queued.attachments.add(Attachment.objects.get(pk=self.attachment_labels["invoice"]))
        low = self.send(
            "queued_low", recipients=["low@example.com"], subject="Low priority", message=".", priority="low"
        )
        low.attachments.add(Attachment.objects.get(pk=self.attachment_labels["notes"]))
        batch = [
            {"recipients": ["many1@example.com"], "subject": "Batch 1", "message": "One."},
            {"recipients": ["many2@example.com"], "subject": "Batch 2", "message": "Two.", "bcc": [DOE]},
            {
                "recipients": ["many3@example.com"],
                "template": "order_receipt",
                "context": {"number": "A-1003", "total": "19.90"},
                "language": "de",
            },
        ]
        last = Email.objects.order_by("-pk").values_list("pk", flat=True).first()
        mail.send_many(batch)  # returns the emails from 3.9 on; before, None
        created = Email.objects.filter(pk__gt=last).order_by("pk")
        for index, (kwargs, email) in enumerate(zip(batch, created, strict=True), start=1):
            self.remember(f"batch_{index}", email, kwargs)
        self.send(
            "scheduled_future",
            recipients=["future@example.com"],
            subject="Not yet",
            message=".",
            scheduled_time=now + datetime.timedelta(days=30),
        )
        past = self.send(
            "scheduled_past",
            recipients=["past@example.com"],
            subject="Overdue",
            message=".",
            scheduled_time=now - datetime.timedelta(days=2),
        )
        past.attachments.add(Attachment.objects.get(pk=self.attachment_labels["notes"]))
        self.send(
            "expired",
            recipients=["expired@example.com"],
            subject="Too late",
            message=".",
            expires_at=now - datetime.timedelta(days=1),
        )
        self.send(
            "expiring",
            recipients=["expiring@example.com"],
            subject="Still in time",
            message=".",
            scheduled_time=now - datetime.timedelta(hours=3),
            expires_at=now + datetime.timedelta(days=30),
        )
        context = {"name": "Jürgen", "code": "X-42", "items": [1, 2, 3], "vip": True}
        self.send(
            "render_on_delivery",
            recipients=[DOE],
            template="welcome",
            context=context,
            render_on_delivery=True,
            headers={"X-Campaign": "welcome"},
        )
        self.send(
            "render_on_delivery_de",
            recipients=["kunde@example.de"],
            template="welcome",
            language="de",
            context={"name": "Jürgen", "code": "Y-7"},
            render_on_delivery=True,
        )
        self.send(
            "template_rendered",
            recipients=["receipt@example.com"],
            template="order_receipt",
            context={"number": "A-1004", "total": "5.00"},
        )
        self.send(
            "render_on_delivery_expired",
            recipients=["gone@example.com"],
            template="newsletter",
            context={"month": "May"},
            render_on_delivery=True,
            expires_at=now - datetime.timedelta(minutes=5),
        )
        self.send("bulk_alias", recipients=["bulk@example.com"], subject="Via bulk", message=".", backend="bulk")
        # mail.create() leaves priority 'now' mail with no status until dispatch() runs: never delivered.
        null_status = mail.create("shop@example.com", ["limbo@example.com"], subject="No status", priority="now")
        self.remember("null_status", null_status, {"recipients": ["limbo@example.com"]})
        # Through the model, as django-post_office's own utils.send_mail does: no priority at all.
        no_priority = Email.objects.create(
            from_email="shop@example.com", to=["nopriority@example.com"], subject="No priority", status=2, priority=None
        )
        self.remember("null_priority", no_priority, {"recipients": ["nopriority@example.com"]})

    def shop(self) -> None:
        Order.objects.create(
            number="A-1001", confirmation_id=self.labels["sent"], reminder_id=self.labels["queued_high"]
        )
        Order.objects.create(number="A-1002", confirmation_id=self.labels["render_on_delivery"])
        Order.objects.create(number="A-1003")
        Campaign.objects.create(name="Spring", template_id=self.template_labels["newsletter"])
        Campaign.objects.create(name="Welcome (de)", template_id=self.template_labels["welcome_de"])

    def bulk_history(self, count: int) -> None:
        """``count`` emails django-post_office already delivered or gave up on, inserted in bulk (none is due).

        Recipients with display names holding commas, every priority, retries, Message-IDs, headers, some
        pointing at a translation; a log each; one attachment in a hundred emails, shared by them. Dated
        after the other rows, all at once (one UPDATE, not one a row).
        """
        if count <= 0:
            return
        last = Email.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        translation = self.template_labels["welcome_de"]
        given = []
        for index in range(count):
            recipients = {
                "to": [f'"Kunde, Nr. {index}" <kunde{index}@example.com>', f"kopie{index}@example.com"],
                "cc": [ROE] if index % 3 == 0 else [],
                "bcc": ["audit@example.com"] if index % 5 == 0 else [],
            }
            given.append(
                (
                    recipients,
                    Email(
                        from_email="Shop <shop@example.com>",
                        **recipients,
                        subject=f"Bulk history {index}",
                        message=f"Grüße, Nummer {index}.",
                        html_message=f"<p>Grüße, Nummer {index}.</p>" if index % 2 else "",
                        status=1 if index % 4 == 0 else 0,
                        priority=[0, 1, 2, None][index % 4],
                        number_of_retries=[None, 1, 2][index % 3],
                        message_id=f"<bulk-{index}@shop.example>",
                        headers={"X-Bulk": str(index)} if index % 2 else None,
                        template_id=translation if index % 7 == 0 else None,
                        context={"name": f"Kunde {index}", "code": str(index)} if index % 7 == 0 else None,
                    ),
                )
            )
        Email.objects.bulk_create([email for _, email in given], batch_size=500)
        created = list(Email.objects.filter(pk__gt=last).order_by("pk"))
        for (recipients, _), email in zip(given, created, strict=True):
            self.recipients[email.pk] = recipients
        Log.objects.bulk_create(
            [
                Log(
                    email=email,
                    status=email.status,
                    exception_type="SMTPRecipientsRefused" if email.status == 1 else "",
                    message="refused" if email.status == 1 else "",
                )
                for email in created
            ],
            batch_size=500,
        )
        through = Attachment.emails.through
        for start in range(0, len(created), 100):
            attachment = Attachment(name=f"bulk-{start}.txt")
            attachment.file.save(f"bulk-{start}.txt", ContentFile(f"Anhang {start}\n".encode() * 20))
            through.objects.bulk_create(
                [through(attachment_id=attachment.pk, email_id=email.pk) for email in created[start : start + 100]]
            )
        when = HISTORY + datetime.timedelta(days=400, microseconds=314159)
        Email.objects.filter(pk__gt=last).update(created=when, last_updated=when + datetime.timedelta(minutes=5))
        Log.objects.filter(email_id__gt=last).update(date=when + datetime.timedelta(minutes=1))

    def date_history(self) -> None:
        """Give every row a distinct date in the past, as a database in use for a while has."""
        step = datetime.timedelta(hours=1, seconds=7, microseconds=1001)
        for index, pk in enumerate(Email.objects.order_by("pk").values_list("pk", flat=True)):
            created = HISTORY + index * step
            Email.objects.filter(pk=pk).update(created=created, last_updated=created + datetime.timedelta(minutes=5))
        for index, pk in enumerate(Log.objects.order_by("pk").values_list("pk", flat=True)):
            Log.objects.filter(pk=pk).update(date=HISTORY + datetime.timedelta(days=1) + index * step)
        for index, pk in enumerate(EmailTemplate.objects.order_by("pk").values_list("pk", flat=True)):
            created = HISTORY - datetime.timedelta(days=30) + index * step
            EmailTemplate.objects.filter(pk=pk).update(
                created=created, last_updated=created + datetime.timedelta(days=2)
            )


RECIPIENT_ARGS = {"to": "recipients", "cc": "cc", "bcc": "bcc"}


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# -- the manifest ---------------------------------------------------------------------------------


def _json_value(value):
    if isinstance(value, datetime.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _rows(queryset) -> list[dict]:
    return [{key: _json_value(value) for key, value in row.items()} for row in queryset.order_by("pk").values()]


def _raw(table: str, columns: list[str]) -> dict[int, dict[str, object]]:
    """Columns as the database holds them (django-post_office's field would split them on commas)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('id')}, {', '.join(quote(c) for c in columns)} FROM {quote(table)}")
        return {row[0]: dict(zip(columns, row[1:])) for row in cursor.fetchall()}


def _columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        return [column.name for column in connection.introspection.get_table_description(cursor, table)]


def _message(email: Email) -> dict:
    """What django-post_office's delivery would send for this email (its prepare_email_message())."""
    message = email.prepare_email_message()
    html = [content for content, mimetype in getattr(message, "alternatives", []) if mimetype == "text/html"]
    attachments = []
    for attachment in email.attachments.order_by("pk"):
        with attachment.file.open("rb") as handle:
            attachments.append(
                {
                    "id": attachment.pk,
                    "name": attachment.name,
                    "mimetype": attachment.mimetype,
                    "headers": attachment.headers,
                    "sha256": hashlib.sha256(handle.read()).hexdigest(),
                }
            )
    return {
        "subject": message.subject,
        "body": message.body,
        "content_subtype": message.content_subtype,
        "html": html[0] if html else None,
        "headers": {key: str(value) for key, value in (message.extra_headers or {}).items()},
        "attachments": attachments,
    }


def manifest(filler: Filler) -> dict:
    tables = {
        "post_office_email": Email,
        "post_office_emailtemplate": EmailTemplate,
        "post_office_attachment": Attachment,
        "post_office_attachment_emails": Attachment.emails.through,
        "post_office_log": Log,
        "shop_order": Order,
        "shop_campaign": Campaign,
    }
    data = {
        table: {"columns": sorted(_columns(table)), "rows": _rows(model.objects.all())}
        for table, model in tables.items()
    }
    raw = _raw("post_office_email", ["to", "cc", "bcc"])
    for row in data["post_office_email"]["rows"]:
        row.update({field: raw[row["id"]][field] for field in ("to", "cc", "bcc")})
    files = {}
    for attachment in Attachment.objects.order_by("pk"):
        with attachment.file.open("rb") as handle:
            content = handle.read()
        files[str(attachment.pk)] = {"path": attachment.file.name, "sha256": hashlib.sha256(content).hexdigest()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
        migrations = [list(row) for row in cursor.fetchall()]
    # What django-post_office's next send_queued_mail would deliver: its own selection of due mail.
    due = list(mail.get_queued())
    if hasattr(mail, "attach_templates"):  # 3.11 on; before, each email loads its template itself
        mail.attach_templates(due)
    return {
        "django_post_office": DPO_VERSION,
        "django": django.get_version(),
        "vendor": connection.vendor,
        "filled_at": _json_value(timezone.now()),
        "labels": filler.labels,
        "template_labels": filler.template_labels,
        "attachment_labels": filler.attachment_labels,
        "recipients": {str(pk): value for pk, value in filler.recipients.items()},
        "tables": data,
        "files": files,
        "migrations": migrations,
        "due": sorted(email.pk for email in due),
        "dpo_messages": {str(email.pk): _message(email) for email in due},
    }


def main() -> None:
    args = sys.argv[1:]
    bulk = 0
    if len(args) == 3 and args[1] == "--bulk" and args[2].isdigit():
        bulk = int(args.pop())
        args.pop()
    if len(args) != 1:
        sys.exit("usage: fill_dpo.py MANIFEST.json [--bulk N]")
    import post_office

    installed = Path(str(distribution("django-post_office").locate_file("post_office/__init__.py"))).resolve()
    if Path(post_office.__file__).resolve() != installed:
        sys.exit(f"fill_dpo.py must run with django-post_office's post_office, not {post_office.__file__}")
    call_command("migrate", verbosity=0)
    now = timezone.now()
    filler = Filler()
    filler.templates()
    filler.history()
    filler.webhook_statuses()
    filler.queue(now)
    filler.shop()
    filler.date_history()
    filler.bulk_history(bulk)
    Path(args[0]).write_text(json.dumps(manifest(filler), indent=1, sort_keys=True, ensure_ascii=False))


if __name__ == "__main__":
    main()
