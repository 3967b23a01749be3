"""Switching from django-mailer: its queue, logs and don't-send list imported, then delivered by us.

For each of SQLite, PostgreSQL and MariaDB: django-mailer 2.3.2 (in .venv-mailer, made by
scripts/mailer-venv) migrates an empty database and fills it through its own API
(tests/switch_mailer/fill_mailer.py writes a manifest of every row); then the project switches to this
package (tests/switch_mailer/mailer_project, mailer_site.settings: django-mailer is not even installed)
and, as a user would, runs ``migrate``, ``import_mailer_queue --dry-run``, ``import_mailer_queue``,
``import_mailer_queue`` again, and ``send_queued_mail`` to an SMTP sink. Every row is read back through
our ORM (tests/switch_mailer/read_imported.py) and compared with the manifest.

Run with ``make test-switch-mailer``; POST_OFFICE_SWITCH_DBS picks the databases (default
"sqlite,postgres,mysql"), POST_OFFICE_SWITCH_KEEP=1 keeps the databases and files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_sink import Received, SMTPSink
from tests.switch_support import SwitchProject

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROJECT = HERE / "mailer_project"
MAILER_PYTHON = ROOT / os.environ.get("MAILER_VENV", ".venv-mailer") / "bin" / "python"
OUR_PYTHON = Path(sys.executable)
VENDORS = [name for name in os.environ.get("POST_OFFICE_SWITCH_DBS", "sqlite,postgres,mysql").split(",") if name]
KEEP = bool(os.environ.get("POST_OFFICE_SWITCH_KEEP"))

SENT, FAILED, QUEUED, REQUEUED = 0, 1, 2, 3
LOW, MEDIUM, HIGH = 0, 1, 2
#: django-mailer's priorities (1 high, 2 medium, 3 low, 4 deferred) as ours.
PRIORITIES = {1: HIGH, 2: MEDIUM, 3: LOW, 4: MEDIUM}
#: What fill_mailer.py attaches to "Rich" (the same bytes).
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BINARY = bytes(range(256))


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# -- databases and commands ---------------------------------------------------------------------


class Project(SwitchProject):
    """One database on one server, the django-mailer project's files beside it, and the commands run against it."""

    directory = PROJECT

    @property
    def marker(self) -> Path:
        """The file the malicious pickle would create if anything ran it."""
        return self.workdir / "PICKLE-RAN"

    def env(self, python: Path, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        if python == MAILER_PYTHON:
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = str(ROOT)  # this checkout's post_office, whatever the virtualenv has
        env.update(
            MAILER_SWITCH_DB=self.vendor,
            MAILER_SWITCH_DB_NAME=self.db_name,
            MAILER_SWITCH_MEDIA_ROOT=str(self.workdir / "media"),
            MAILER_SWITCH_MARKER=str(self.marker),
            DJANGO_SETTINGS_MODULE="mailer_site.settings",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def manage(self, *args: str, **extra_env: str) -> str:
        return self.ok(" ".join(args), OUR_PYTHON, str(PROJECT / "manage.py"), *args, **extra_env).stdout

    def read(self, label: str) -> dict[str, Any]:
        out = self.workdir / f"dump-{label}.json"
        self.ok(f"read_imported ({label})", OUR_PYTHON, str(HERE / "read_imported.py"), str(out))
        return json.loads(out.read_text())


def _prefix() -> str:
    base = os.environ.get("POST_OFFICE_DB_NAME")
    return f"{base}_mailer_" if base else "mailerswitch_"


@dataclass
class Switched:
    project: Project
    manifest: dict[str, Any]
    dry_run: str
    dry_dump: dict[str, Any]
    first: str
    imported: dict[str, Any]
    second: str
    again: dict[str, Any]
    received: list[Received]
    delivered: dict[str, Any]
    second_delivery: list[Received]

    def email(self, subject: str, dump: str = "imported") -> dict[str, Any]:
        (found,) = [row for row in getattr(self, dump)["emails"] if row["subject"] == subject]
        return found


@pytest.fixture(scope="module", params=VENDORS)
def switched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not MAILER_PYTHON.exists():
        pytest.fail(
            f"{MAILER_PYTHON} is missing: run scripts/mailer-venv (make test-switch-mailer does)", pytrace=False
        )
    vendor = request.param
    project = Project(vendor, f"{_prefix()}{vendor}", tmp_path_factory.mktemp(f"mailer-{vendor}"))
    project.create()
    manifest_path = project.workdir / "manifest.json"
    project.ok("fill_mailer.py (django-mailer)", MAILER_PYTHON, str(HERE / "fill_mailer.py"), str(manifest_path))
    manifest = json.loads(manifest_path.read_text())
    project.manage("migrate")
    dry_run = project.manage("import_mailer_queue", "--dry-run")
    dry_dump = project.read("dry-run")
    first = project.manage("import_mailer_queue", "--batch-size", "3")
    imported = project.read("imported")
    second = project.manage("import_mailer_queue")
    again = project.read("again")
    with SMTPSink() as sink:
        project.manage("send_queued_mail", MAILER_SWITCH_SMTP_PORT=str(sink.port))
        received = list(sink.messages)
        project.manage("send_queued_mail", MAILER_SWITCH_SMTP_PORT=str(sink.port))
        second_delivery = sink.messages[len(received) :]
    delivered = project.read("delivered")
    yield Switched(
        project, manifest, dry_run, dry_dump, first, imported, second, again, received, delivered, second_delivery
    )
    if KEEP:
        print(f"\n{vendor}: kept database {project.db_name} and {project.workdir}")
    else:
        project.drop()


# -- what django-mailer left ----------------------------------------------------------------------

#: Subjects of the messages fill_mailer.py leaves queued (readable ones), and of those only its logs remember.
QUEUED_SUBJECTS = [
    "Down medium",
    "Down high",
    "High",
    "Medium",
    "Low",
    "Html",
    "[Shop] Admins",
    "Rich",
    "Partly listed",
    "All listed",
    "Filtered",
]
REBUILT = {"Sent plain": SENT, "Sent with attachment": SENT, "Flaky": SENT, "Not sent": FAILED}


def test_django_mailer_left_every_kind_of_row(switched: Switched) -> None:
    manifest = switched.manifest
    assert manifest["version"] == "2.3.2"
    subjects = [m["subject"] for m in manifest["messages"] if m["id"] not in manifest["bad_messages"]]
    assert subjects == QUEUED_SUBJECTS + ["Bad address"]
    by_subject = {m["subject"]: m for m in manifest["messages"]}
    assert (by_subject["Down medium"]["priority"], by_subject["Down medium"]["retry_count"]) == (4, 2)
    assert (by_subject["Down high"]["priority"], by_subject["Down high"]["retry_count"]) == (2, 2)
    assert {m["priority"] for m in manifest["messages"]} == {1, 2, 3, 4}
    results = [(log["subject"], log["result"]) for log in manifest["logs"]]
    assert ("Flaky", "3") in results and ("Flaky", "1") in results
    assert results.count(("Down medium", "3")) == 3 and results.count(("Down high", "3")) == 2
    assert ("Not sent", "2") in results
    assert [m["subject"] for m in manifest["sent_by_mailer"]] == ["Sent plain", "Sent with attachment", "Flaky"]
    assert not switched.project.marker.exists(), "the fill script must never unpickle the malicious row"


# -- the command's runs ---------------------------------------------------------------------------


def _report(manifest: dict[str, Any], done: str) -> list[str]:
    bad = manifest["bad_messages"]
    entries = manifest["entries"]
    bad_address = next(m["id"] for m in manifest["messages"] if m["subject"] == "Bad address")
    return [
        f"  do-not-send entries: 3 {done}, 1 already on the list, 0 already imported, 1 unreadable",
        f"  messages: 11 {done} (9 queued, 2 requeued after deferral or retry), 0 already imported, 4 unreadable",
        f"  message logs: 10 {done}, with 4 emails rebuilt from them (3 sent, 1 failed), 0 already imported, "
        "1 unreadable",
        "Rows that could not be read (not imported):",
        f"  mailer_dontsendentry #{entries[1]['id']}: is not an address we can list: to_address: 'not-an-address' "
        "is not a valid email address",
        f"  mailer_message #{bad[0]}: its message_data cannot be unpickled (UnpicklingError: invalid load key, "
        "'\\xb6'.)",
        f"  mailer_message #{bad[1]}: its message_data holds a dict, not a Django EmailMessage",
        f"  mailer_message #{bad[2]}: its pickle names posix.system, which is not part of a Django email message; "
        "not loaded",
        f"  mailer_message #{bad_address}: cannot be queued: recipients: 'not an address' is not a valid email address",
        f"  mailer_messagelog #{manifest['bad_logs'][0]}: its message_data cannot be unpickled (UnpicklingError: "
        "pickle data was truncated)",
    ]


def test_dry_run_reports_everything_and_writes_nothing(switched: Switched) -> None:
    lines = switched.dry_run.splitlines()
    assert lines[0] == "django-mailer's tables in database 'default' (dry run: nothing was written):"
    assert lines[1:] == _report(switched.manifest, "to import")
    assert switched.dry_dump == {"emails": [], "do_not_send": [], "imported_rows": []}


def test_import_reports_what_it_imported(switched: Switched) -> None:
    lines = switched.first.splitlines()
    assert lines[0] == "django-mailer's tables in database 'default':"
    assert lines[1:] == _report(switched.manifest, "imported")


def test_a_second_run_imports_nothing_twice(switched: Switched) -> None:
    lines = switched.second.splitlines()
    assert lines[1:4] == [
        "  do-not-send entries: 0 imported, 0 already on the list, 4 already imported, 1 unreadable",
        "  messages: 0 imported (0 queued, 0 requeued after deferral or retry), 11 already imported, 4 unreadable",
        "  message logs: 0 imported, with 0 emails rebuilt from them (0 sent, 0 failed), 10 already imported, "
        "1 unreadable",
    ]
    assert switched.again == switched.imported
    # 4 entries (the fifth is unreadable), 11 messages and 10 logs, each recorded once.
    sources = [source for source, _id, _email in switched.imported["imported_rows"]]
    assert (
        sources.count("mailer_dontsendentry"),
        sources.count("mailer_message"),
        sources.count("mailer_messagelog"),
    ) == (4, 11, 10)


def test_nothing_the_pickles_name_was_run(switched: Switched) -> None:
    assert not switched.project.marker.exists()


# -- what was imported ------------------------------------------------------------------------------


def test_queued_and_deferred_messages_keep_priority_retries_and_dates(switched: Switched) -> None:
    manifest = {m["subject"]: m for m in switched.manifest["messages"]}
    for subject in QUEUED_SUBJECTS:
        email, source = switched.email(subject), manifest[subject]
        retried = source["priority"] == 4 or source["retry_count"] > 0
        assert email["status"] == (REQUEUED if retried else QUEUED), subject
        assert email["priority"] == PRIORITIES[source["priority"]], subject
        assert email["number_of_retries"] == source["retry_count"], subject
        assert email["created"] == source["when_added"], subject
    assert [switched.email(s)["priority"] for s in ("High", "Medium", "Low")] == [HIGH, MEDIUM, LOW]
    assert switched.email("Down medium")["status"] == REQUEUED and switched.email("Down high")["status"] == REQUEUED


def test_addresses_headers_and_bodies(switched: Switched) -> None:
    html = switched.email("Html")
    assert html["to"] == ['"Doe, Jane" <jane@example.com>']
    assert html["from_email"] == "Shop <shop@example.com>"
    assert (html["message"], html["html_message"]) == ("Plain part.", "<p>HTML <b>part</b>.</p>")
    assert html["headers"] == {"X-Campaign": "spring", "Reply-To": "support@example.com"}
    admins = switched.email("[Shop] Admins")
    assert (admins["to"], admins["from_email"]) == (["ada@example.com", "bo@example.com"], "server@example.com")
    # django-mailer dropped its listed recipient when the message was queued.
    assert switched.email("Filtered")["to"] == ["keep2@example.com"]


def test_attachments_and_alternatives(switched: Switched) -> None:
    rich = switched.email("Rich")
    assert (rich["to"], rich["cc"], rich["bcc"]) == (["rich@example.com"], ["cc@example.com"], ["bcc@example.com"])
    assert rich["headers"] == {"X-Order": "42", "Reply-To": "reply@example.com"}
    assert rich["html_message"] == '<p>HTML body <img src="cid:logo"></p>'
    assert rich["alternatives"] == [["BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar"]]
    assert [(a["name"], a["mimetype"], a["sha256"], a["headers"]) for a in rich["attachments"]] == [
        ("notes.txt", "text/plain", sha(b"Some notes"), None),
        ("data.bin", "application/octet-stream", sha(BINARY), None),
        (
            "logo.gif",
            "image/gif",
            sha(GIF),
            {"Content-ID": "<logo>", "Content-Disposition": 'inline; filename="logo.gif"'},
        ),
        ("invoice.pdf", "application/pdf", sha(PDF), {"Content-Disposition": 'attachment; filename="invoice.pdf"'}),
    ]
    sent = switched.email("Sent with attachment")
    assert [(a["name"], a["sha256"]) for a in sent["attachments"]] == [("receipt.txt", sha(b"Receipt 42"))]


def test_every_log_is_on_its_email_with_its_date_and_result(switched: Switched) -> None:
    manifest = switched.manifest
    expected: dict[str, list[tuple[str, int, str, str]]] = {}
    for log in manifest["logs"]:
        if log["id"] in manifest["bad_logs"]:
            continue
        status = SENT if log["result"] == "1" else FAILED
        kind = "DoNotSend" if log["result"] == "2" else ""
        expected.setdefault(log["subject"], []).append((log["when_attempted"], status, kind, log["log_message"]))
    for subject, logs in expected.items():
        got = [
            (log["date"], log["status"], log["exception_type"], log["message"])
            for log in switched.email(subject)["logs"]
        ]
        assert got == logs, subject
        assert {log["worker"] for log in switched.email(subject)["logs"]} == {"django-mailer"}
    assert len(expected["Down medium"]) == 3 and len(expected["Down high"]) == 2


def test_mail_only_the_logs_remember_is_rebuilt(switched: Switched) -> None:
    manifest = switched.manifest
    when_added = {log["subject"]: log["when_added"] for log in manifest["logs"]}
    for subject, status in REBUILT.items():
        email = switched.email(subject)
        assert email["status"] == status, subject
        assert email["created"] == when_added[subject], subject
    # The Message-ID it was sent with, from the log of its successful attempt.
    sent_ids = {m["subject"]: m["message_id"] for m in manifest["sent_by_mailer"]}
    for subject in ("Sent plain", "Sent with attachment", "Flaky"):
        assert switched.email(subject)["message_id"] == sent_ids[subject], subject


def test_do_not_send_entries(switched: Switched) -> None:
    entries: dict[str, dict[str, Any]] = {}
    for entry in switched.manifest["entries"]:
        entries.setdefault(entry["to_address"].lower(), entry)  # the first of Blocked@ and BLOCKED@ is imported
    got = switched.imported["do_not_send"]
    assert [(e["address"], e["reason"]) for e in got] == [
        ("blocked@example.com", "django-mailer"),
        ("gone@example.com", "django-mailer"),
        ("late.listed@example.com", "django-mailer"),
    ]
    for entry in got:
        assert entry["created"] == entries[entry["address"]]["when_added"]
        assert entry["note"] == f"django-mailer DontSendEntry #{entries[entry['address']]['id']}"


# -- delivery ------------------------------------------------------------------------------------


def _by_subject(received: list[Received]) -> dict[str, Received]:
    found: dict[str, Received] = {}
    for item in received:
        subject = str(item.message["Subject"])
        assert subject not in found, f"{subject!r} was delivered twice"
        found[subject] = item
    return found


def test_send_queued_mail_delivers_the_imported_queue(switched: Switched) -> None:
    received = _by_subject(switched.received)
    expected = {
        "Down medium": ["x@down.example"],
        "Down high": ["y@down.example"],
        "High": ["high@example.com"],
        "Medium": ["medium@example.com"],
        "Low": ["low@example.com"],
        "Html": ["jane@example.com"],
        "[Shop] Admins": ["ada@example.com", "bo@example.com"],
        "Rich": ["rich@example.com", "cc@example.com", "bcc@example.com"],
        "Partly listed": ["keep@example.com"],
        "Filtered": ["keep2@example.com"],
    }
    assert {subject: item.rcpt_tos for subject, item in received.items()} == expected
    # Sent with one thread: high first, then medium (the requeued ones among them), then low.
    order = [str(item.message["Subject"]) for item in switched.received]
    assert set(order[:2]) == {"High", "Html"}
    assert set(order[-2:]) == {"Low", "Rich"}
    assert switched.second_delivery == []


def test_delivered_messages_carry_their_parts(switched: Switched) -> None:
    received = _by_subject(switched.received)
    html = received["Html"].message
    assert html["To"] == '"Doe, Jane" <jane@example.com>'
    assert (html["X-Campaign"], html["Reply-To"]) == ("spring", "support@example.com")
    assert html.get_body(("html",)).get_content().strip() == "<p>HTML <b>part</b>.</p>"
    rich = received["Rich"].message
    assert rich["Cc"] == "cc@example.com" and rich["Bcc"] is None
    assert rich.get_body(("plain",)).get_content().strip() == "Text body."
    calendar = [part for part in rich.walk() if part.get_content_type() == "text/calendar"]
    assert [part.get_content() for part in calendar] == ["BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"]
    files = {
        part.get_filename(): (part.get_content_type(), sha(part.get_payload(decode=True)))
        for part in rich.walk()
        if part.get_filename()
    }
    assert files == {
        "notes.txt": ("text/plain", sha(b"Some notes")),
        "data.bin": ("application/octet-stream", sha(BINARY)),
        "logo.gif": ("image/gif", sha(GIF)),
        "invoice.pdf": ("application/pdf", sha(PDF)),
    }
    (logo,) = [part for part in rich.walk() if part.get_filename() == "logo.gif"]
    assert logo["Content-ID"] == "<logo>"


def test_statuses_and_logs_after_delivery(switched: Switched) -> None:
    for subject in QUEUED_SUBJECTS:
        email = switched.email(subject, "delivered")
        if subject == "All listed":
            assert email["status"] == FAILED
            assert [log["exception_type"] for log in email["logs"]] == ["DoNotSend", "NoRecipientLeft"]
            continue
        assert email["status"] == SENT, subject
        assert email["logs"][-1]["status"] == SENT, subject
    partly = switched.email("Partly listed", "delivered")
    assert partly["to"] == ["keep@example.com"]
    assert [(log["exception_type"], log["message"]) for log in partly["logs"][:1]] == [
        (
            "DoNotSend",
            "Late.Listed@example.com is on the do-not-send list (reason: django-mailer); not sent to this recipient",
        )
    ]
    # Retries were not counted again: the imported ones stand.
    assert switched.email("Down medium", "delivered")["number_of_retries"] == 2
    # Mail django-mailer had sent is not sent again.
    for subject, status in REBUILT.items():
        assert switched.email(subject, "delivered")["status"] == status
