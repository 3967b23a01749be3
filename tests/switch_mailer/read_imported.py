"""Read the switched project's database through this package's ORM (runs under .venv's interpreter).

    .venv/bin/python tests/switch_mailer/read_imported.py OUT.json

with the MAILER_SWITCH_* environment of the test: every email with its attachments (content's SHA-256
read through our storage, in the order they were attached) and Log rows, the do-not-send list and the
record of imported rows; dates as UTC ISO strings.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "mailer_project"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_site.settings")

import django  # noqa: E402

django.setup()

from post_office.models import DoNotSendEntry, Email, ImportedRow  # noqa: E402


def when(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.UTC).isoformat() if value is not None else None


def email_row(email: Email) -> dict:
    links = email.attachments.through.objects.filter(email_id=email.pk).order_by("id").select_related("attachment")
    attachments = []
    for link in links:
        attachment = link.attachment
        with attachment.file.open("rb") as handle:
            content = handle.read()
        attachments.append(
            {
                "name": attachment.name,
                "mimetype": attachment.mimetype,
                "headers": attachment.headers,
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
    return {
        "id": email.pk,
        "subject": email.subject,
        "from_email": email.from_email,
        "to": email.to,
        "cc": email.cc,
        "bcc": email.bcc,
        "message": email.message,
        "html_message": email.html_message,
        "alternatives": email.alternatives,
        "headers": email.headers,
        "status": email.status,
        "priority": email.priority,
        "number_of_retries": email.number_of_retries,
        "message_id": email.message_id,
        "created": when(email.created),
        "last_updated": when(email.last_updated),
        "attachments": attachments,
        "logs": [
            {
                "date": when(log.date),
                "status": log.status,
                "exception_type": log.exception_type,
                "message": log.message,
                "worker": log.worker,
            }
            for log in email.logs.order_by("date", "id")
        ],
    }


def main(out: str) -> None:
    dump = {
        "emails": [email_row(email) for email in Email.objects.order_by("id")],
        "do_not_send": [
            {"address": e.address, "reason": e.reason, "created": when(e.created), "note": e.note}
            for e in DoNotSendEntry.objects.order_by("address")
        ],
        "imported_rows": sorted([row.source, row.source_id, row.email_id] for row in ImportedRow.objects.all()),
    }
    Path(out).write_text(json.dumps(dump, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
