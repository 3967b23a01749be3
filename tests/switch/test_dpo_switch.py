"""Switching a django-post_office database to this package with plain ``manage.py migrate``.

For each of SQLite, PostgreSQL and MariaDB: django-post_office 3.12.0 (in .venv-dpo, made by
scripts/dpo-venv) migrates an empty database and fills it through its own API (tests/switch/fill_dpo.py
writes a manifest of every row); then, with this package and the same project
(tests/switch/dpo_project), ``manage.py check``, ``manage.py migrate`` and ``send_queued_mail`` run as a
user would run them, and every row is compared with the manifest through our ORM
(tests/switch/read_switched.py). Run with ``make test-switch``; POST_OFFICE_SWITCH_DBS picks the
databases (default "sqlite,postgres,mysql"), POST_OFFICE_SWITCH_KEEP=1 keeps the databases and files.

An older django-post_office: DPO_VENV names its virtualenv, POST_OFFICE_SWITCH_DPO_VERSION its version and
DPO_SWITCH_SHOP_MIGRATIONS=shop.migrations_old_dpo the shop's migrations (before 3.9 there is no 0014 to
depend on); ``make test-switch`` runs 3.8.0 on SQLite that way. A database an older release created and
3.12.0 upgraded: POST_OFFICE_SWITCH_BORN_VENV names the older release's virtualenv, which migrates the empty
database first (``make test-switch`` runs 3.0.4 that way: its JSON columns are text).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.smtp_sink import SMTPSink
from tests.switch_support import SwitchProject

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROJECT = HERE / "dpo_project"
DPO_PYTHON = ROOT / os.environ.get("DPO_VENV", ".venv-dpo") / "bin" / "python"
OUR_PYTHON = Path(sys.executable)
#: The django-post_office release .venv-dpo holds (an older one in another virtualenv: DPO_VENV).
DPO_VERSION = os.environ.get("POST_OFFICE_SWITCH_DPO_VERSION", "3.12.0")
#: The older django-post_office's virtualenv that created the database, before .venv-dpo's upgraded it.
BORN_PYTHON = (
    ROOT / os.environ["POST_OFFICE_SWITCH_BORN_VENV"] / "bin" / "python"
    if os.environ.get("POST_OFFICE_SWITCH_BORN_VENV")
    else None
)
VENDORS = [name for name in os.environ.get("POST_OFFICE_SWITCH_DBS", "sqlite,postgres,mysql").split(",") if name]
KEEP = bool(os.environ.get("POST_OFFICE_SWITCH_KEEP"))


SENT, FAILED, QUEUED, REQUEUED = 0, 1, 2, 3
MEDIUM = 1
WEBHOOK_STATUSES = [10, 20, 30, 40, 50, 60, 65, 70, 80, 90]


def _prefix() -> str:
    """Database names of their own: po_<name>_switch_ beside a helper's test database, else dposwitch_."""
    base = os.environ.get("POST_OFFICE_DB_NAME")
    return f"{base}_switch_" if base else "dposwitch_"


# -- databases and commands ---------------------------------------------------------------------


class Project(SwitchProject):
    """One database on one server, the dpo project's files beside it, and the commands run against it."""

    directory = PROJECT

    def env(self, python: Path, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        if python != OUR_PYTHON:
            env.pop("PYTHONPATH", None)  # nothing may shadow django-post_office's post_office
        env.update(
            DJANGO_SETTINGS_MODULE="dpo_site.settings",
            DPO_SWITCH_DB=self.vendor,
            DPO_SWITCH_DB_NAME=self.db_name,
            DPO_SWITCH_MEDIA_ROOT=str(self.workdir / "media"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def manage(self, label: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return self.run(label, OUR_PYTHON, str(PROJECT / "manage.py"), *args, **extra_env)

    def read(self, command: str) -> dict:
        out = self.workdir / f"{command}-{len(self.outputs)}.json"
        self.ok(f"read_switched {command}", OUR_PYTHON, str(HERE / "read_switched.py"), command, str(out))
        return json.loads(out.read_text())


def unconverted_database_check_ids() -> list[str]:
    """The ids of post_office/checks.py's checks that speak of django-post_office's database.

    # LEAD: the system check that recognises a database django-post_office created but that is not
    # converted yet. Found by its function mentioning django-post_office; set POST_OFFICE_SWITCH_CHECK_ID
    # (e.g. post_office.W030) to name it explicitly.
    """
    if os.environ.get("POST_OFFICE_SWITCH_CHECK_ID"):
        return [os.environ["POST_OFFICE_SWITCH_CHECK_ID"]]
    source = (ROOT / "post_office" / "checks.py").read_text()
    ids = []
    for block in re.split(r"\n(?=def )", source):
        if "django-post_office" in block and ("migrat" in block or "convert" in block):
            ids += re.findall(r'"(post_office\.[EW]\d+)"', block)
    return sorted(set(ids))


# -- the switch, once per database ----------------------------------------------------------------


@dataclass
class Switch:
    project: Project
    manifest: dict
    check_before: subprocess.CompletedProcess[str]
    migrate: subprocess.CompletedProcess[str]


@dataclass
class Switched:
    project: Project
    manifest: dict
    check_after: subprocess.CompletedProcess[str]
    before: dict  # our ORM's view right after migrate
    first_run: list
    second_run: list
    after: dict  # our ORM's view after delivery
    schema: dict  # the tables as the database describes them after migrate


@pytest.fixture(scope="module", params=VENDORS)
def vendor(request):
    return request.param


@pytest.fixture(scope="module")
def switch(vendor, tmp_path_factory):
    if not DPO_PYTHON.exists():
        pytest.fail(f"{DPO_PYTHON} is missing: run scripts/dpo-venv (make test-switch does)", pytrace=False)
    project = Project(vendor, f"{_prefix()}{vendor}", tmp_path_factory.mktemp(f"switch-{vendor}"))
    project.create()
    if BORN_PYTHON:
        # The database was created by an older django-post_office (the shop app came later), then upgraded in place
        # to .venv-dpo's release, whose migrate fill_dpo.py runs.
        project.ok(
            "migrate (the django-post_office it was born with)",
            BORN_PYTHON,
            str(PROJECT / "manage.py"),
            "migrate",
            DPO_SWITCH_WITHOUT_SHOP="1",
        )
    manifest_path = project.workdir / "manifest.json"
    project.ok("fill_dpo.py (django-post_office)", DPO_PYTHON, str(HERE / "fill_dpo.py"), str(manifest_path))
    manifest = json.loads(manifest_path.read_text())
    check_before = project.manage("check (before migrate)", "check")
    migrate = project.manage("migrate", "migrate")
    yield Switch(project, manifest, check_before, migrate)
    if KEEP:
        print(f"\n{vendor}: kept database {project.db_name} and {project.workdir}")
    else:
        project.drop()


@pytest.fixture(scope="module")
def switched(switch):
    project = switch.project
    if switch.migrate.returncode != 0:
        pytest.fail(f"{project.vendor}: manage.py migrate failed:\n{project.outputs['migrate']}", pytrace=False)
    check_after = project.manage("check (after migrate)", "check")
    schema = project.read("schema")
    before = project.read("dump")
    with SMTPSink() as sink:
        port = str(sink.port)
        project.ok(
            "send_queued_mail", OUR_PYTHON, str(PROJECT / "manage.py"), "send_queued_mail", DPO_SWITCH_SMTP_PORT=port
        )
        first_run = list(sink.messages)
        project.ok(
            "send_queued_mail (again)",
            OUR_PYTHON,
            str(PROJECT / "manage.py"),
            "send_queued_mail",
            DPO_SWITCH_SMTP_PORT=port,
        )
        second_run = sink.messages[len(first_run) :]
    after = project.read("dump")
    return Switched(project, switch.manifest, check_after, before, first_run, second_run, after, schema)


@pytest.fixture(scope="module")
def fresh(vendor, tmp_path_factory):
    """The same project installed from scratch with this package: what a converted database must look like."""
    project = Project(vendor, f"{_prefix()}{vendor}_fresh", tmp_path_factory.mktemp(f"fresh-{vendor}"))
    project.create()
    project.manage("migrate (fresh)", "migrate")
    yield project
    if not KEEP:
        project.drop()


# -- comparing ------------------------------------------------------------------------------------


class Diff:
    """Every difference found, each naming the table, the row, the column, what was expected and what came."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.lines: list[str] = []

    def expect(self, where: str, expected, got) -> None:
        if expected != got:
            self.lines.append(f"{where}: expected {expected!r}, got {got!r}")

    def note(self, line: str) -> None:
        self.lines.append(line)

    def check(self) -> None:
        if self.lines:
            lines = "\n  ".join(self.lines)
            pytest.fail(f"{self.vendor}: {len(self.lines)} difference(s):\n  {lines}", pytrace=False)


def _by_id(rows: list[dict]) -> dict[int, dict]:
    return {row["id"]: row for row in rows}


#: django-post_office's columns, each checked below; a column the manifest has and this list lacks fails the test.
CHECKED_COLUMNS = {
    "post_office_email": {
        "id", "from_email", "to", "cc", "bcc", "subject", "message", "html_message", "status", "priority",
        "created", "last_updated", "scheduled_time", "expires_at", "message_id", "number_of_retries", "headers",
        "template_id", "context", "backend_alias", "recipient_delivery_status",
    },
    "post_office_emailtemplate": {
        "id", "name", "description", "created", "last_updated", "subject", "content", "html_content", "language",
        "default_template_id",
    },
    "post_office_attachment": {"id", "file", "name", "mimetype", "headers"},
    "post_office_attachment_emails": {"id", "attachment_id", "email_id"},
    "post_office_log": {"id", "email_id", "date", "status", "exception_type", "message"},
    "shop_order": {"id", "number", "confirmation_id", "reminder_id"},
    "shop_campaign": {"id", "name", "template_id"},
}  # fmt: skip


def _compare_rows(
    diff: Diff, table: str, expected_rows: list[dict], ours: dict, columns, expect=None, extra_allowed=lambda row: False
) -> None:
    """Each manifest row of ``table`` against our row with the same id, column by column."""
    got_rows = _by_id(ours["tables"].get(table, []))
    expected_ids = {row["id"] for row in expected_rows}
    diff.expect(f"{table}: ids missing", [], sorted(expected_ids - set(got_rows)))
    extra = [row for pk, row in sorted(got_rows.items()) if pk not in expected_ids and not extra_allowed(row)]
    diff.expect(f"{table}: rows the switch added", [], extra)
    fields = set(ours["fields"].get(table, []))
    for row in expected_rows:
        got = got_rows.get(row["id"])
        if got is None:
            continue
        for column in columns:
            if column not in row:
                continue  # an older django-post_office without this column
            expected = expect(row, column) if expect else row[column]
            if column not in fields:
                diff.note(f"{table} id={row['id']} {column}: our model has no such field (expected {expected!r})")
                continue
            diff.expect(f"{table} id={row['id']} {column}", expected, got[column])


def _expected_email(manifest: dict):
    recipients = manifest["recipients"]

    def expect(row: dict, column: str):
        if column in ("to", "cc", "bcc"):
            return recipients[str(row["id"])][column]
        if column == "priority" and row["priority"] is None:
            return MEDIUM  # django-post_office's default priority
        if column == "number_of_retries" and row["number_of_retries"] is None:
            return 0
        return row[column]

    return expect


def _addresses(header) -> list[tuple[str, str]]:
    if header is None:
        return []
    return [(address.display_name, address.addr_spec) for address in header.addresses]


def _parsed(addresses: list[str]) -> list[tuple[str, str]]:
    return [email.utils.parseaddr(address) for address in addresses]


def _text(part) -> str | None:
    return None if part is None else part.get_content().replace("\r\n", "\n").rstrip("\n")


def _files(message) -> list[dict]:
    files = []
    for part in message.walk():
        if part.is_multipart() or part.get_filename() is None:
            continue
        content = part.get_payload(decode=True)
        hashes = {hashlib.sha256(content).hexdigest(), hashlib.sha256(content.replace(b"\r\n", b"\n")).hexdigest()}
        files.append({"name": part.get_filename(), "hashes": hashes, "type": part.get_content_type(), "part": part})
    return files


# -- the tests ------------------------------------------------------------------------------------


def test_django_post_office_filled_every_kind_of_row(switch):
    """The fill really made what the switch must keep (a change of django-post_office's API shows here)."""
    manifest, diff = switch.manifest, Diff(switch.project.vendor)
    emails = manifest["tables"]["post_office_email"]["rows"]
    diff.expect("django-post_office version", DPO_VERSION, manifest["django_post_office"])
    diff.expect("email statuses", {SENT, FAILED, QUEUED, REQUEUED, None}, {row["status"] for row in emails})
    diff.expect("email priorities", {0, 1, 2, 3, None}, {row["priority"] for row in emails})
    diff.expect("retries", {None, 1, 2}, {row["number_of_retries"] for row in emails})
    diff.expect("a display name with a comma", True, any('"Doe, John"' in (row["to"] or "") for row in emails))
    logs = manifest["tables"]["post_office_log"]["rows"]
    webhooks = "recipient_delivery_status" in manifest["tables"]["post_office_email"]["columns"]  # 3.10 on
    expected_statuses = {SENT, FAILED, *WEBHOOK_STATUSES} if webhooks else {SENT, FAILED}
    diff.expect("log statuses", expected_statuses, {row["status"] for row in logs})
    templates = manifest["tables"]["post_office_emailtemplate"]["rows"]
    diff.expect("translations", 2, sum(1 for row in templates if row["default_template_id"]))
    links = Counter(row["attachment_id"] for row in manifest["tables"]["post_office_attachment_emails"]["rows"])
    diff.expect("an attachment on several emails", True, max(links.values()) >= 3)
    diff.expect("due mail", True, len(manifest["due"]) >= 10)
    for table, spec in manifest["tables"].items():
        unchecked = set(spec["columns"]) - CHECKED_COLUMNS[table]
        diff.expect(f"{table}: columns this test does not check", set(), unchecked)
    diff.check()


def test_check_before_migrate_names_the_conversion(switch):
    """`manage.py check` on the unconverted database says what to run instead of a traceback later."""
    output = switch.project.outputs["check (before migrate)"]
    assert "Traceback" not in output, output
    ids = unconverted_database_check_ids()
    if not ids:
        pytest.skip("post_office/checks.py has no check about an unconverted django-post_office database yet")
    assert any(check_id in output for check_id in ids), output
    assert "manage.py migrate" in output, output
    # Nothing was converted yet: the check must not send the user looking for a half-done conversion.
    assert "stopped after" not in output, output


def test_plain_migrate_converts_the_database(switch):
    project = switch.project
    assert switch.migrate.returncode == 0, project.outputs["migrate"]
    check = project.manage("migrate --check", "migrate", "--check")
    assert check.returncode == 0, project.outputs["migrate --check"]


def test_check_is_clean_after_migrate(switched):
    output = switched.project.outputs["check (after migrate)"]
    assert switched.check_after.returncode == 0, output
    assert "post_office." not in output, output


def test_emails_keep_every_column(switched):
    manifest, diff = switched.manifest, Diff(switched.project.vendor)
    columns = sorted(CHECKED_COLUMNS["post_office_email"] - {"status"})
    rows = manifest["tables"]["post_office_email"]["rows"]
    _compare_rows(diff, "post_office_email", rows, switched.before, columns, _expected_email(manifest))
    ours = _by_id(switched.before["tables"]["post_office_email"])
    for row in rows:
        got = ours.get(row["id"], {}).get("status")
        if row["status"] is None:
            # django-post_office never delivers mail without a status (priority 'now' never dispatched).
            if got in (QUEUED, REQUEUED, None):
                diff.note(f"post_office_email id={row['id']} status: expected not queued (was NULL), got {got!r}")
        else:
            diff.expect(f"post_office_email id={row['id']} status", row["status"], got)
    diff.check()


def test_json_columns_answer_json_queries(switched):
    """headers and context are JSON to the database too: the ORM's key lookups work on them."""
    tables = switched.manifest["tables"]
    emails, attachments = tables["post_office_email"]["rows"], tables["post_office_attachment"]["rows"]
    expected = {
        "emails with header X-Shop-Order": [row["id"] for row in emails if "X-Shop-Order" in (row["headers"] or {})],
        "emails with context name Jürgen": [
            row["id"] for row in emails if isinstance(row["context"], dict) and row["context"].get("name") == "Jürgen"
        ],
        "attachments with header Content-ID": [
            row["id"] for row in attachments if "Content-ID" in (row["headers"] or {})
        ],
    }
    diff = Diff(switched.project.vendor)
    for label, ids in expected.items():
        diff.expect(label, sorted(ids), switched.before["json_lookups"][label])
    diff.check()


def test_templates_and_translations_kept(switched):
    diff = Diff(switched.project.vendor)
    rows = switched.manifest["tables"]["post_office_emailtemplate"]["rows"]
    _compare_rows(
        diff, "post_office_emailtemplate", rows, switched.before, CHECKED_COLUMNS["post_office_emailtemplate"]
    )
    diff.check()


def test_attachments_files_and_links_kept(switched):
    manifest, ours, diff = switched.manifest, switched.before, Diff(switched.project.vendor)
    rows = manifest["tables"]["post_office_attachment"]["rows"]
    _compare_rows(diff, "post_office_attachment", rows, ours, CHECKED_COLUMNS["post_office_attachment"])
    got_rows = _by_id(ours["tables"]["post_office_attachment"])
    for pk, expected in manifest["files"].items():
        diff.expect(f"post_office_attachment id={pk} file content SHA-256", expected["sha256"], ours["files"].get(pk))
        if "content_hash" in got_rows.get(int(pk), {}):
            diff.expect(
                f"post_office_attachment id={pk} content_hash", expected["sha256"], got_rows[int(pk)]["content_hash"]
            )
    links = manifest["tables"]["post_office_attachment_emails"]["rows"]
    diff.expect(
        "post_office_attachment_emails (attachment_id, email_id)",
        sorted([row["attachment_id"], row["email_id"]] for row in links),
        ours["attachment_links"],
    )
    diff.check()


def test_logs_kept(switched):
    diff = Diff(switched.project.vendor)
    rows = switched.manifest["tables"]["post_office_log"]["rows"]
    # The conversion may say in a Log why mail django-post_office left without a status is not queued.
    no_status = {row["id"] for row in switched.manifest["tables"]["post_office_email"]["rows"] if row["status"] is None}
    _compare_rows(
        diff,
        "post_office_log",
        rows,
        switched.before,
        CHECKED_COLUMNS["post_office_log"],
        extra_allowed=lambda row: row["email_id"] in no_status,
    )
    diff.check()


def test_shop_rows_still_point_at_the_same_emails_and_templates(switched):
    manifest, ours, diff = switched.manifest, switched.before, Diff(switched.project.vendor)
    for table in ("shop_order", "shop_campaign"):
        _compare_rows(diff, table, manifest["tables"][table]["rows"], ours, CHECKED_COLUMNS[table])
    for row in manifest["tables"]["shop_order"]["rows"]:
        resolved = ours["orders"].get(row["number"], {})
        diff.expect(
            f"shop_order {row['number']} confirmation (through our Email)",
            row["confirmation_id"],
            resolved.get("confirmation"),
        )
        diff.expect(
            f"shop_order {row['number']} reminder (through our Email)", row["reminder_id"], resolved.get("reminder")
        )
    for row in manifest["tables"]["shop_campaign"]["rows"]:
        diff.expect(
            f"shop_campaign {row['name']} template (through our EmailTemplate)",
            row["template_id"],
            ours["campaigns"].get(row["name"]),
        )
    # The database still enforces the shop's foreign keys, and their columns still match the ids they point at.
    expected_keys = {
        "shop_order": {"confirmation_id": ["post_office_email", "id"], "reminder_id": ["post_office_email", "id"]},
        "shop_campaign": {"template_id": ["post_office_emailtemplate", "id"]},
    }
    for table, keys in expected_keys.items():
        diff.expect(f"{table}: foreign key constraints", keys, ours["foreign_keys"][table])
    types = ours["column_types"]
    integer = {"AutoField": "IntegerField", "BigAutoField": "BigIntegerField", "SmallAutoField": "SmallIntegerField"}
    for table, column, target in [
        ("shop_order", "confirmation_id", "post_office_email"),
        ("shop_order", "reminder_id", "post_office_email"),
        ("shop_campaign", "template_id", "post_office_emailtemplate"),
    ]:
        target_type = integer.get(types[target]["id"], types[target]["id"])
        diff.expect(
            f"{table}.{column} type (as {target}.id)",
            target_type,
            integer.get(types[table][column], types[table][column]),
        )
    diff.check()


def test_send_queued_mail_delivers_exactly_what_django_post_office_would_have(switched):
    manifest, diff = switched.manifest, Diff(switched.project.vendor)
    expected = {manifest["dpo_messages"][str(pk)]["subject"]: pk for pk in manifest["due"]}
    assert len(expected) == len(manifest["due"]), "the fill must give each due email its own subject"
    received = [email.message_from_bytes(item.data, policy=email.policy.default) for item in switched.first_run]
    got = Counter(str(message["subject"]) for message in received)
    for subject, count in got.items():
        if subject not in expected:
            diff.note(f"delivered but not due in django-post_office: {subject!r} ({count}x)")
        elif count != 1:
            diff.note(f"delivered {count} times: {subject!r}")
    for subject, pk in expected.items():
        if subject not in got:
            diff.note(f"post_office_email id={pk} not delivered: {subject!r}")
    emails = _by_id(manifest["tables"]["post_office_email"]["rows"])
    for item, message in zip(switched.first_run, received):
        pk = expected.get(str(message["subject"]))
        if pk is not None:
            _compare_message(diff, pk, item, message, emails[pk], manifest)
    diff.check()


def _compare_message(diff: Diff, pk: int, item, message, row: dict, manifest: dict) -> None:
    where = f"delivered email id={pk}"
    dpo = manifest["dpo_messages"][str(pk)]
    recipients = manifest["recipients"][str(pk)]
    everyone = recipients["to"] + recipients["cc"] + recipients["bcc"]
    diff.expect(f"{where} envelope recipients", sorted(addr for _, addr in _parsed(everyone)), sorted(item.rcpt_tos))
    diff.expect(f"{where} To", _parsed(recipients["to"]), _addresses(message["to"]))
    diff.expect(f"{where} Cc", _parsed(recipients["cc"]), _addresses(message["cc"]))
    diff.expect(f"{where} Bcc header", None, message["bcc"])
    diff.expect(f"{where} From", _parsed([row["from_email"]]), _addresses(message["from"]))
    if row["message_id"]:
        diff.expect(f"{where} Message-ID", row["message_id"], message["message-id"])
    for key, value in (row["headers"] or {}).items():
        diff.expect(f"{where} header {key}", value, message[key] and str(message[key]))
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    if dpo["content_subtype"] == "html":
        diff.expect(f"{where} HTML body", dpo["body"].rstrip("\n"), _text(html))
    else:
        diff.expect(f"{where} text body", dpo["body"].rstrip("\n"), _text(plain))
        diff.expect(f"{where} HTML body", dpo["html"] and dpo["html"].rstrip("\n"), _text(html))
    files = _files(message)
    diff.expect(
        f"{where} attachment names", sorted(a["name"] for a in dpo["attachments"]), sorted(f["name"] for f in files)
    )
    for attachment in dpo["attachments"]:
        found = [f for f in files if f["name"] == attachment["name"] and attachment["sha256"] in f["hashes"]]
        if not found:
            diff.note(
                f"{where} attachment {attachment['name']!r}: no part with its content (SHA-256 {attachment['sha256'][:12]}…)"
            )
            continue
        if attachment["mimetype"]:
            diff.expect(f"{where} attachment {attachment['name']!r} type", attachment["mimetype"], found[0]["type"])
        for key, value in (attachment["headers"] or {}).items():
            if key.lower() != "content-disposition":
                diff.expect(f"{where} attachment {attachment['name']!r} header {key}", value, found[0]["part"][key])


def test_render_on_delivery_mail_is_rendered_with_its_stored_context(switched):
    labels = switched.manifest["labels"]
    received = {
        str(m["subject"]): m
        for m in (email.message_from_bytes(item.data, policy=email.policy.default) for item in switched.first_run)
    }
    assert "Welcome Jürgen" in received, sorted(received)
    assert _text(received["Welcome Jürgen"].get_body(("plain",))) == "Hi Jürgen, your code is X-42."
    assert "Willkommen Jürgen" in received, sorted(received)
    assert _text(received["Willkommen Jürgen"].get_body(("plain",))) == "Hallo Jürgen, dein Code ist Y-7."
    ours = _by_id(switched.after["tables"]["post_office_email"])
    assert ours[labels["render_on_delivery"]]["status"] == SENT
    assert ours[labels["render_on_delivery_expired"]]["status"] != SENT


def test_statuses_after_delivery(switched):
    """Due mail is sent once, with a new sent Log; nothing else is sent; the history is untouched."""
    manifest, diff = switched.manifest, Diff(switched.project.vendor)
    before, after = (
        _by_id(switched.before["tables"]["post_office_email"]),
        _by_id(switched.after["tables"]["post_office_email"]),
    )
    due = set(manifest["due"])
    old_logs = {row["id"] for row in manifest["tables"]["post_office_log"]["rows"]}
    new_logs = [row for row in switched.after["tables"]["post_office_log"] if row["id"] not in old_logs]
    sent_logs = Counter(row["email_id"] for row in new_logs if row["status"] == SENT)
    for pk, row in before.items():
        status = after[pk]["status"]
        if pk in due:
            diff.expect(f"post_office_email id={pk} status after delivery", SENT, status)
            diff.expect(f"post_office_email id={pk} new sent logs", 1, sent_logs[pk])
        elif row["status"] in (SENT, FAILED):
            diff.expect(f"post_office_email id={pk} status (history)", row["status"], status)
            diff.expect(
                f"post_office_email id={pk} last_updated (history)", row["last_updated"], after[pk]["last_updated"]
            )
        elif status == SENT:
            diff.note(f"post_office_email id={pk} was not due in django-post_office but is sent now")
    diff.check()


def test_a_second_send_queued_mail_sends_nothing(switched):
    subjects = [
        email.message_from_bytes(item.data, policy=email.policy.default)["subject"] for item in switched.second_run
    ]
    assert subjects == []


def test_new_rows_get_ids_above_the_copied_ones(switched):
    manifest, diff = switched.manifest, Diff(switched.project.vendor)
    added = switched.project.read("add")
    for table, pk in added.items():
        if table == "email_to":
            continue
        copied = max(row["id"] for row in manifest["tables"][table]["rows"])
        if pk <= copied:
            diff.note(f"{table}: a new row got id {pk}, not above the copied ids (max {copied})")
    diff.expect("the new email's to", ['"After, Switch" <after@example.com>'], added["email_to"])
    diff.check()


def test_a_fresh_database_with_the_shop_app_migrates(fresh):
    """A project whose migrations depend on django-post_office's names installs from scratch with this package."""
    assert "(exit 0)" in fresh.outputs["migrate (fresh)"].splitlines()[0], fresh.outputs["migrate (fresh)"]
    fresh.ok("migrate --check (fresh)", OUR_PYTHON, str(PROJECT / "manage.py"), "migrate", "--check")
    added = fresh.read("add")
    assert added["shop_order"] >= 1 and added["post_office_email"] >= 1
    assert added["email_to"] == ['"After, Switch" <after@example.com>']


def _sqlite_integers(column):
    """SQLite stores every integer column alike: a declared INTEGER where a fresh install says BIGINT is the same."""
    if column is None:
        return None
    kinds = {"BigIntegerField": "IntegerField", "BigAutoField": "AutoField"}
    return [kinds.get(column[0], column[0]), *column[1:]]


def test_the_converted_schema_is_a_fresh_install_s(switched, fresh):
    """Column types, NULLs, keys, indexes and checks as a fresh install has them, and the same migrations recorded."""
    assert "(exit 0)" in fresh.outputs["migrate (fresh)"].splitlines()[0], fresh.outputs["migrate (fresh)"]
    expected, got, diff = fresh.read("schema"), switched.schema, Diff(switched.project.vendor)
    diff.expect("tables", sorted(expected["tables"]), sorted(got["tables"]))
    diff.expect("migrations recorded", expected["migrations"], got["migrations"])
    same = _sqlite_integers if switched.project.vendor == "sqlite" else (lambda column: column)
    for table in sorted(set(expected["tables"]) & set(got["tables"])):
        want, have = expected["tables"][table], got["tables"][table]
        for column in sorted(set(want["columns"]) | set(have["columns"])):
            diff.expect(
                f"{table}.{column} [type, null]", same(want["columns"].get(column)), same(have["columns"].get(column))
            )
        for constraint in sorted(set(want["constraints"]) - set(have["constraints"])):
            diff.note(f"{table}: missing after the conversion: {constraint}")
        for constraint in sorted(set(have["constraints"]) - set(want["constraints"])):
            diff.note(f"{table}: only after the conversion: {constraint}")
    diff.check()
