"""End-to-end demo: queue a few hundred emails, deliver them over real SMTP, check what arrived.

Run from the repository root with ``make demo`` (or ``.venv/bin/python example/demo.py``).

It uses its own fresh SQLite database (``example/demo.sqlite3``, or ``DEMO_DB_PATH``)
and attachment directory (``example/demo_media``, or ``DEMO_MEDIA_ROOT``), starts an
SMTP server on 127.0.0.1, runs ``send_queued_mail --progress`` against it, prints a
summary, then compares what the server received with what the database says was
sent. It exits with status 1 and says which check failed if anything is off.
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedMessage
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as a script, only example/ would be on the path; tests.smtp_sink and example live at the root.
    sys.path.insert(0, str(REPO_ROOT))

from tests.smtp_sink import SMTPSink  # noqa: E402  (needs the path set above)

# Our own code must not raise deprecation warnings (Django 6.1's MAILERS transition).
warnings.filterwarnings("error", category=DeprecationWarning, module=r"post_office(\.|$)")
warnings.filterwarnings("error", category=PendingDeprecationWarning, module=r"post_office(\.|$)")

#: How many emails of each kind are queued.
BULK = 360  # through mail.send_many, in one call
SINGLE = 30  # through mail.send, one at a time
DJANGO_API = 5  # through django.core.mail (EMAIL_BACKEND / MAILERS = post_office.EmailBackend)
HIGH, MEDIUM_MIN = 60, 100  # keep at least one batch (BATCH_SIZE=100) of medium between high and low
SENDER = "Example Shop <shop@example.com>"
#: The demo's SMTP server refuses every recipient at this domain (550, no such mailbox).
REFUSED_DOMAIN = "nowhere.example.com"


@dataclass
class Expected:
    """What one queued email should look like when (if) it arrives."""

    ref: str
    email_id: int = 0
    attachments: dict[str, bytes] = field(default_factory=dict)
    priority: str = "medium"
    language: str = ""
    should_arrive: bool = True
    envelope: set[str] = field(default_factory=set)


def prepare_environment() -> tuple[Path, Path]:
    db_path = Path(os.environ.get("DEMO_DB_PATH") or REPO_ROOT / "example" / "demo.sqlite3")
    media_root = Path(os.environ.get("DEMO_MEDIA_ROOT") or REPO_ROOT / "example" / "demo_media")
    # A fresh database and attachment store every run, so the checks below see only this run's mail.
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(media_root, ignore_errors=True)
    os.environ["DEMO_DB_PATH"] = str(db_path)
    os.environ["DEMO_MEDIA_ROOT"] = str(media_root)
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    return db_path, media_root


def create_templates() -> None:
    from post_office.models import EmailTemplate

    base = EmailTemplate.objects.create(
        name="order_shipped",
        description="Sent when an order leaves the warehouse.",
        subject="[{{ ref }}] Your order {{ order }} has shipped",
        content="Hello {{ name }},\n\nyour order {{ order }} ({{ items }} items) is on its way.\n",
        html_content="<p>Hello {{ name }},</p><p>your order <b>{{ order }}</b> is on its way.</p>",
    )
    EmailTemplate.objects.create(
        name="order_shipped",
        language="de",
        default_template=base,
        subject="[{{ ref }}] Ihre Bestellung {{ order }} wurde versandt",
        content="Hallo {{ name }},\n\nIhre Bestellung {{ order }} ist unterwegs.\n",
        html_content="<p>Hallo {{ name }},</p><p>Ihre Bestellung <b>{{ order }}</b> ist unterwegs.</p>",
    )


def queue_emails(scratch: Path) -> dict[str, Expected]:
    """Queue every kind of email the demo delivers; return what should arrive, by ref."""
    from django.core import mail as django_mail
    from django.db import transaction
    from django.utils import timezone

    from post_office import mail

    rng = random.Random(2024)  # deterministic demo data
    shared_logo = rng.randbytes(3000)  # one binary file attached to many emails, stored once
    shared_terms = ("Terms and conditions\n" * 40).encode()
    now = timezone.now()
    expected: dict[str, Expected] = {}

    def context(ref: str, i: int) -> dict[str, object]:
        return {"ref": ref, "order": f"A-{10000 + i}", "name": f"Customer {i} & Co", "items": i % 7 + 1}

    # 1. send_many: one bulk insert for all of them.
    priorities = ["high"] * HIGH + ["medium"] * (BULK - HIGH - 120) + ["low"] * 120
    assert priorities.count("medium") >= MEDIUM_MIN
    rng.shuffle(priorities)
    bulk = []
    for i in range(BULK):
        ref = f"bulk-{i:04d}"
        item = Expected(ref=ref, priority=priorities[i], language="de" if i % 9 == 0 else "")
        item.envelope = {f"customer{i}@example.com"}
        kwargs: dict[str, object] = {
            "recipients": [f'"Customer {i}, Esq." <customer{i}@example.com>'],
            "template": "order_shipped",
            "context": context(ref, i),
            "priority": item.priority,
            "language": item.language,
        }
        if i % 5 == 0:
            kwargs["scheduled_time"] = now - datetime.timedelta(hours=1)  # due already
        if i % 10 == 0:
            invoice = f"Invoice for order A-{10000 + i}\nTotal: {i * 3}.99 EUR\n".encode()
            item.attachments = {f"invoice-{i}.txt": invoice, "logo.png": shared_logo}
            kwargs["attachments"] = {
                f"invoice-{i}.txt": invoice,
                "logo.png": {"file": shared_logo, "mimetype": "image/png"},
            }
        elif i % 10 == 5:
            item.attachments = {"terms.txt": shared_terms}
            kwargs["attachments"] = [("terms.txt", shared_terms, "text/plain")]
        bulk.append(kwargs)
        expected[ref] = item
    for item, email in zip(expected.values(), mail.send_many(bulk), strict=True):
        item.email_id = email.pk

    # 2. mail.send, one at a time; attachments from files on disk too.
    report = scratch / "report.csv"
    report.write_bytes(b"order,total\n" + b"".join(f"A-{n},{n}.50\n".encode() for n in range(50)))
    for i in range(SINGLE):
        ref = f"single-{i:04d}"
        item = Expected(ref=ref, priority=("low", "medium", "high")[i % 3], envelope={f"single{i}@example.com"})
        attachments = None
        if i % 3 == 0:
            attachments = {"report.csv": str(report), "logo.png": {"file": shared_logo, "mimetype": "image/png"}}
            item.attachments = {"report.csv": report.read_bytes(), "logo.png": shared_logo}
        email = mail.send(
            f"single{i}@example.com",
            SENDER,
            template="order_shipped",
            context=context(ref, i),
            priority=item.priority,
            attachments=attachments,
        )
        item.email_id = email.pk
        expected[ref] = item

    # 3. cc and bcc: every address is an envelope recipient; Bcc never shows in the message.
    ref = "copies-0000"
    email = mail.send(
        ["to@example.com"],
        SENDER,
        subject=f"[{ref}] Copies for {{{{ who }}}}",
        message="Plain text for {{ who }} <not escaped>",
        html_message="<p>HTML for {{ who }}</p>",
        context={"who": "Tom & Jerry"},
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
    )
    expected[ref] = Expected(
        ref=ref, email_id=email.pk, envelope={"to@example.com", "cc@example.com", "hidden@example.com"}
    )

    # 4. Expired before delivery starts: must never be sent.
    ref = "expired-0000"
    email = mail.send(
        "late@example.com",
        SENDER,
        subject=f"[{ref}] Too late",
        message="You should never see this.",
        expires_at=now - datetime.timedelta(minutes=1),
    )
    expected[ref] = Expected(ref=ref, email_id=email.pk, should_arrive=False)

    # 5. Scheduled for tomorrow: stays queued.
    ref = "future-0000"
    email = mail.send(
        "later@example.com",
        SENDER,
        subject=f"[{ref}] Tomorrow",
        message="Not yet.",
        scheduled_time=now + datetime.timedelta(days=1),
    )
    expected[ref] = Expected(ref=ref, email_id=email.pk, should_arrive=False)

    # 5b. To a mailbox the server refuses for good (550): fails at once, with the server's reply in its log.
    ref = "bounced-0000"
    email = mail.send(
        f"nobody@{REFUSED_DOMAIN}",
        SENDER,
        subject=f"[{ref}] Nobody home",
        message="The server refuses this recipient.",
    )
    expected[ref] = Expected(ref=ref, email_id=email.pk, should_arrive=False)

    # 6. Through Django's own mail API: the configured backend queues it.
    for i in range(DJANGO_API):
        ref = f"django-{i:04d}"
        message = django_mail.EmailMultiAlternatives(
            f"[{ref}] Sent with Django's API",
            "Body",
            SENDER,
            [f"django{i}@example.com"],
            reply_to=["support@example.com"],
        )
        message.attach_alternative("<p>Body</p>", "text/html")
        content = f"id,{i}\n".encode()
        message.attach(f"data-{i}.csv", content, "text/csv")
        message.send()
        expected[ref] = Expected(ref=ref, attachments={f"data-{i}.csv": content}, envelope={f"django{i}@example.com"})

    # 7. priority='now': delivered as soon as the transaction commits, before send_queued_mail runs.
    ref = "now-0000"
    with transaction.atomic():
        email = mail.send("urgent@example.com", SENDER, subject=f"[{ref}] Right now", message="Urgent.", priority="now")
    expected[ref] = Expected(ref=ref, email_id=email.pk, priority="now", envelope={"urgent@example.com"})
    return expected


def ref_of(subject: str) -> str:
    return subject[1:].split("]", 1)[0] if subject.startswith("[") else ""


def main() -> int:
    db_path, media_root = prepare_environment()
    started = time.monotonic()
    with SMTPSink(refuse_domains=(REFUSED_DOMAIN,)) as sink, tempfile.TemporaryDirectory() as scratch:
        os.environ["DEMO_SMTP_PORT"] = str(sink.port)  # read by example/settings.py at setup
        os.environ["DEMO_ATTACHMENT_DIR"] = os.path.realpath(scratch)  # the report.csv attached by path
        import django

        django.setup()
        from django.core.management import call_command

        import post_office
        from post_office.models import STATUS, Email

        print(f"Django {django.get_version()}, SQLite database {db_path}, SMTP sink on {sink.host}:{sink.port}")
        # make package-check reads this line: the demo must run on the installed wheel, not on the checkout.
        print(f"post_office {post_office.__version__} imported from {Path(post_office.__file__).parent}")
        call_command("migrate", verbosity=0)
        create_templates()
        expected = queue_emails(Path(scratch))
        for email in Email.objects.filter(subject__contains="Sent with Django's API"):
            expected[ref_of(email.subject)].email_id = email.pk  # Django's API does not return the Email
        total = Email.objects.count()
        print(f"Queued {total} emails ({sum(1 for e in expected.values() if e.attachments)} with attachments).")

        print("Running send_queued_mail --progress")
        sent_before = Email.objects.filter(status=STATUS.sent).count()  # the priority='now' one
        send_started = time.monotonic()
        call_command("send_queued_mail", progress=True)
        elapsed = time.monotonic() - send_started

        sent = Email.objects.filter(status=STATUS.sent).count()
        failed = Email.objects.filter(status=STATUS.failed).count()
        queued = Email.objects.queued().count()
        rate = (sent - sent_before) / elapsed if elapsed > 0 else 0.0
        print()
        print(
            f"Summary: {sent} sent, {failed} failed, {queued} still queued, {elapsed:.2f}s elapsed, {rate:.1f} emails/s"
        )
        errors = check(expected, sink.messages, sent, failed, queued, total)
    print(f"Total demo time {time.monotonic() - started:.1f}s; database kept at {db_path}")
    if errors:
        print(f"DEMO FAILED: {len(errors)} check(s) failed:", file=sys.stderr)
        for error in errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(
        "Checked: every sent email arrived exactly once with its Message-ID and envelope recipients, "
        "the expired and future ones did not, attachments are intact, translations and priority order hold."
    )
    print(f"DEMO OK: the SMTP sink received exactly the {sent} sent emails, attachments intact.")
    print("To look at this mail in the admin: make run, then log in as admin / admin.")
    return 0


def check(
    expected: dict[str, Expected],
    received: list,
    sent: int,
    failed: int,
    queued: int,
    total: int,
) -> list[str]:
    """Compare the sink's mail with the database and with what was queued; return the problems."""
    from post_office.models import PRIORITY, STATUS, Attachment, Email

    errors: list[str] = []
    parsed: list[ParsedMessage] = [r.message for r in received]
    arrivals: dict[str, list[int]] = {}
    for index, message in enumerate(parsed):
        arrivals.setdefault(ref_of(str(message["Subject"])), []).append(index)

    if len(parsed) != sent:
        errors.append(f"the sink received {len(parsed)} messages but {sent} emails have status sent")
    should_arrive = sum(1 for item in expected.values() if item.should_arrive)
    if sent != should_arrive or total != len(expected):
        errors.append(f"{sent} of {total} emails sent; expected {should_arrive} of {len(expected)}")
    if failed != 2 or queued != 1:
        errors.append(f"expected 2 failed (expired, refused) and 1 still queued (future); got {failed} and {queued}")
    unknown = set(arrivals) - set(expected)
    if unknown:
        errors.append(f"unexpected messages arrived: {sorted(unknown)[:5]}")

    emails = {e.pk: e for e in Email.objects.all()}
    message_ids = [str(m["Message-ID"]) for m in parsed]
    for ref, item in expected.items():
        email = emails.get(item.email_id)
        if email is None:
            errors.append(f"{ref}: no Email row")
            continue
        indexes = arrivals.get(ref, [])
        if not item.should_arrive:
            if indexes:
                errors.append(f"{ref}: arrived {len(indexes)} time(s) but must never be sent")
            want = STATUS.failed if ref.startswith(("expired", "bounced")) else STATUS.queued
            if email.status != want:
                errors.append(f"{ref}: status {email.status}, expected {want}")
            continue
        if email.status != STATUS.sent:
            errors.append(f"{ref}: status {email.status}, expected sent")
        if len(indexes) != 1:
            errors.append(f"{ref}: arrived {len(indexes)} times, expected once")
            continue
        message = parsed[indexes[0]]
        if not email.message_id or message_ids.count(email.message_id) != 1:
            errors.append(f"{ref}: Message-ID {email.message_id!r} did not arrive exactly once")
        if str(message["Message-ID"]) != email.message_id:
            errors.append(f"{ref}: arrived with Message-ID {message['Message-ID']}, stored {email.message_id}")
        if item.envelope and set(received[indexes[0]].rcpt_tos) != item.envelope:
            errors.append(f"{ref}: envelope recipients {received[indexes[0]].rcpt_tos}, expected {item.envelope}")
        if "Bcc" in message:
            errors.append(f"{ref}: a Bcc header was transmitted")
        if item.language == "de" and "Ihre Bestellung" not in str(message["Subject"]):
            errors.append(f"{ref}: expected the German translation, got {message['Subject']!r}")
        got = {part.get_filename(): payload(part) for part in message.iter_attachments()}
        if got != item.attachments:
            errors.append(f"{ref}: attachments {describe(got)} differ from queued {describe(item.attachments)}")

    copies = arrivals.get("copies-0000")
    if copies:
        body = parsed[copies[0]].get_body(("plain",))
        if body is None or "Tom & Jerry <not escaped>" not in body.get_content():
            errors.append("copies-0000: plain text was HTML-escaped or is missing")

    # Batches are delivered one after another in priority order, and at least one
    # full batch of medium-priority mail separates the high from the low.
    def positions(priority: str) -> list[int]:
        return [i for item in expected.values() if item.priority == priority for i in arrivals.get(item.ref, [])]

    high, low = positions("high"), positions("low")
    if high and low and max(high) > min(low):
        errors.append("a low-priority email arrived before a high-priority one")
    # Identical content is stored once, however many emails attach it.
    logo_files = Attachment.objects.filter(name="logo.png").values("file").distinct().count()
    links = Email.attachments.through.objects.filter(attachment__name="logo.png").count()
    if logo_files != 1 or links < 2:
        errors.append(f"the shared logo is stored in {logo_files} files for {links} emails; expected 1 file")
    if not Email.objects.filter(priority=PRIORITY.now, status=STATUS.sent).exists():
        errors.append("the priority='now' email was not delivered")
    return errors


def payload(part: ParsedMessage) -> bytes:
    """An attachment's bytes as they arrived.

    SMTP carries text in canonical form, so text/* parts arrive with CRLF line
    endings (plain Django does the same); they are compared with LF endings.
    Binary parts must match byte for byte.
    """
    data = part.get_payload(decode=True) or b""
    return data.replace(b"\r\n", b"\n") if part.get_content_maintype() == "text" else data


def describe(attachments: dict) -> str:
    return "{" + ", ".join(f"{name}: {len(data or b'')} bytes" for name, data in sorted(attachments.items())) + "}"


if __name__ == "__main__":
    sys.exit(main())
