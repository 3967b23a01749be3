"""The conversion of a django-post_office database survives ``manage.py migrate`` killed (SIGKILL) halfway.

MariaDB cannot roll back a schema change, so a ``migrate`` that dies inside a conversion step leaves
that step half done and unrecorded; the next ``migrate`` must finish it with nothing lost
(post_office/migrations/_conversion.py). PostgreSQL and SQLite roll the step back instead.

For each database, django-post_office 3.12.0 fills it as in test_dpo_switch.py, plus ``--bulk`` emails
of history (so the steps take long enough to be interrupted). Then the real ``manage.py migrate`` runs
as a subprocess, printing each schema statement before it runs it (DPO_SWITCH_LOG_SCHEMA), and is
killed with SIGKILL at a point of a plan: so many statements into a chosen migration, plus a delay
(drawn at random within the plan's ranges; POST_OFFICE_SWITCH_KILL_SEED repeats a run). After each
kill the test records where it landed (the last thing migrate printed, the migrations recorded, what
the tables hold: tests/switch/conversion_state.py) and checks that no email or log is gone and that
``manage.py check`` reports post_office.E020 with the right advice. Killed migrates run one after
another, each resuming what the last one left. Then a plain ``migrate`` must finish, and the tests
of test_dpo_switch.py, imported below, compare every row with django-post_office's manifest, the
schema with a fresh install's, and what send_queued_mail delivers.

POST_OFFICE_SWITCH_KILL_DBS picks the databases (default: POST_OFFICE_SWITCH_DBS's),
POST_OFFICE_SWITCH_KILL_BULK the extra emails (default 3000).
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from tests.switch.test_dpo_switch import (  # noqa: F401 -- the tests are collected here too, on a killed database
    BORN_PYTHON,
    DPO_PYTHON,
    HERE,
    KEEP,
    OUR_PYTHON,
    PROJECT,
    VENDORS,
    Project,
    Switch,
    _prefix,
    fresh,
    switched,
    test_a_second_send_queued_mail_sends_nothing,
    test_attachments_files_and_links_kept,
    test_check_is_clean_after_migrate,
    test_django_post_office_filled_every_kind_of_row,
    test_emails_keep_every_column,
    test_json_columns_answer_json_queries,
    test_logs_kept,
    test_new_rows_get_ids_above_the_copied_ones,
    test_plain_migrate_converts_the_database,
    test_render_on_delivery_mail_is_rendered_with_its_stored_context,
    test_send_queued_mail_delivers_exactly_what_django_post_office_would_have,
    test_shop_rows_still_point_at_the_same_emails_and_templates,
    test_statuses_after_delivery,
    test_templates_and_translations_kept,
    test_the_converted_schema_is_a_fresh_install_s,
)
from tests.switch_support import TIMEOUT

KILL_VENDORS = [name for name in os.environ.get("POST_OFFICE_SWITCH_KILL_DBS", ",".join(VENDORS)).split(",") if name]
BULK = int(os.environ.get("POST_OFFICE_SWITCH_KILL_BULK", "3000"))
SEED = int(os.environ.get("POST_OFFICE_SWITCH_KILL_SEED") or random.SystemRandom().randrange(10**6))
LAST = "0022_convert_queue_tables"

if not KILL_VENDORS:
    pytest.skip("POST_OFFICE_SWITCH_KILL_DBS names no database", allow_module_level=True)

#: Where to kill: (migration, statements into it, delay in seconds), each a (low, high) range drawn from.
#: ``migrate`` is killed once it began that migration (or a later one: an earlier kill may have landed
#: further), printed that many schema statements of it (0: none yet) and the delay passed; if the
#: migration ends first, at the start of the next, without the delay. A statement is printed just
#: before it runs, so a kill lands while it runs or after it. The counts follow each database's
#: statements per migration (MariaDB: 0016 3, 0017 18, 0018 29, 0019 28, 0020 8, 0021 10, 0022 12;
#: PostgreSQL about as many; SQLite, which rebuilds tables: 3, 33, 106, 22, 19, 33, 61); the delays
#: from 0016's start fall inside its copy of the recipients (about a second for 3000 emails, after
#: three quick ADD COLUMNs).
PLANS = {
    # Every step and the moments between its statements: the database that keeps what a step did.
    "mysql": [
        ("0015", (0, 0), (0, 0.003)),
        ("0016", (1, 2), (0, 0)),  # some lists columns added, none filled
        ("0016", (0, 0), (0.1, 0.8)),  # copying the recipients
        ("0017", (1, 3), (0, 0)),  # old text columns dropped, lists not renamed yet
        ("0017", (4, 8), (0, 0)),  # renaming
        ("0017", (9, 18), (0, 0)),
        ("0018", (0, 0), (0, 0.02)),  # filling the NULLs django-post_office left
        ("0018", (1, 14), (0, 0)),
        ("0018", (15, 29), (0, 0)),
        ("0019", (1, 10), (0, 0)),  # the foreign keys to the templates dropped, ids widened
        ("0019", (11, 20), (0, 0)),  # ... to the emails
        ("0019", (21, 28), (0, 0)),
        ("0020", (1, 8), (0, 0)),
        ("0021", (1, 6), (0, 0)),
        ("0021", (7, 10), (0, 0)),
        ("0022", (1, 12), (0, 0)),
    ],
    # Each step is one transaction: a kill anywhere in it leaves the step not done at all.
    "postgres": [
        ("0016", (0, 0), (0.1, 0.8)),
        ("0017", (1, 18), (0, 0)),
        ("0018", (1, 30), (0, 0)),
        ("0019", (1, 32), (0, 0)),
        ("0021", (1, 11), (0, 0)),
        ("0022", (1, 11), (0, 0)),
    ],
    "sqlite": [
        ("0016", (0, 0), (0.1, 0.8)),
        ("0017", (1, 33), (0, 0)),
        ("0018", (1, 106), (0, 0)),
        ("0019", (1, 22), (0, 0)),
        ("0021", (1, 33), (0, 0)),
        ("0022", (1, 61), (0, 0)),
    ],
}

EVENT = re.compile(r"Applying (?P<app>\w+)\.(?P<name>\w+)\.\.\.|schema: (?P<sql>[^\n]*)\n|(?P<ok> OK\b)")


@dataclass
class Kill:
    number: int
    aim: str  # the plan's point, as drawn
    events: list[tuple[str, str]] = field(default_factory=list)  # ("apply"|"sql"|"ok", text), as migrate printed
    killed: bool = False  # False: migrate ended by itself before the kill
    returncode: int | None = None
    last_line: str = ""  # the last line migrate printed
    after_ms: float = 0  # from the last event read before the kill to the kill
    state: dict = field(default_factory=dict)  # conversion_state.py's view after the kill
    check: subprocess.CompletedProcess[str] | None = None  # manage.py check after the kill

    @property
    def recorded(self) -> list[str]:
        return [name for name in self.state.get("migrations", []) if name >= "0015"]

    @property
    def phase(self) -> str:
        """before / mid / after the conversion, from what migrate printed and what the database recorded."""
        if LAST in self.state.get("migrations", []):
            return "after"
        started = self.recorded or any(kind == "apply" and text >= "post_office.0015" for kind, text in self.events)
        return "mid" if started else "before"

    @property
    def step(self) -> tuple[str, int] | None:
        """The migration migrate was in when it died (not yet OK) and how many of its statements it printed."""
        current, statements = None, 0
        for kind, text in self.events:
            if kind == "apply":
                current, statements = text, 0
            elif kind == "sql":
                statements += 1
            elif kind == "ok":
                current = None
        return (current, statements) if current else None

    def where(self) -> str:
        step = self.step
        if not self.killed:
            return f"migrate ended by itself (exit {self.returncode}) before the kill: {self.last_line[:200]}"
        if step is None:
            last = next((text for kind, text in reversed(self.events) if kind == "apply"), "nothing")
            return f"between migrations (after {last} OK)" if self.events else "before migrate printed anything"
        name, statements = step
        last_sql = next((text for kind, text in reversed(self.events) if kind == "sql"), "")
        if not statements:
            return f"in {name}, before its first statement"
        return (
            f"in {name}, during or after its statement {statements} of this run ({self.after_ms:.0f} ms after it"
            f" was read): {last_sql[:110]}"
        )

    def describe(self) -> str:
        recorded = self.recorded[-1] if self.recorded else "nothing after 0014"
        return (
            f"kill {self.number}: aimed at {self.aim}\n"
            f"    landed {self.where()}\n"
            f"    phase: {self.phase}; recorded up to {recorded}; tables: {'; '.join(_progress(self.state))}"
        )


def _progress(state: dict) -> list[str]:
    """What the database shows of each conversion step, whether or not the step was recorded."""
    tables = state.get("tables", {})

    def columns(table: str) -> dict[str, str]:
        return tables.get(table, {}).get("columns", {})

    def constraints(table: str) -> list[str]:
        return tables.get(table, {}).get("constraints", [])

    email, counts = columns("post_office_email"), state.get("counts", {})
    facts = []
    if "post_office_conversion_sequences" in tables:
        facts.append("SQLite counters saved")
    lists = [name for name in ("to_list", "cc_list", "bcc_list") if name in email]
    if lists:
        facts.append(f"+{'/'.join(lists)} ({counts.get('emails without to_list', '?')} emails without to_list)")
    kinds = {name: email.get(name, "-") for name in ("to", "cc", "bcc")}
    facts.append("to/cc/bcc " + "/".join(kinds.values()))
    added = [
        name
        for name in ("alternatives", "claimed_by", "language", "lease_expires_at", "pending_recipients")
        + ("template_file", "template_language")
        if name in email
    ]
    facts.append(f"0018 columns {len(added)}/7")
    if counts.get("emails without status") or counts.get("emails without priority"):
        facts.append(
            f"NULL status {counts.get('emails without status')}, NULL priority {counts.get('emails without priority')}"
        )
    big = [
        table.removeprefix("post_office_")
        for table in ("post_office_emailtemplate", "post_office_email", "post_office_attachment", "post_office_log")
        if columns(table).get("id") == "BigAutoField"
    ]
    facts.append(f"64-bit ids: {','.join(big) or 'none'}")
    template_rules = [
        name for name in constraints("post_office_emailtemplate") if name.startswith("post_office_template_")
    ]
    facts.append(f"template constraints {len(template_rules)}/2")
    attachment = [
        name for name in ("content_hash", "created", "last_used") if name in columns("post_office_attachment")
    ]
    if attachment:
        facts.append(
            f"attachment +{'/'.join(attachment)} ({counts.get('attachments without content_hash', '?')} without hash)"
        )
    if "worker" in columns("post_office_log"):
        facts.append("log.worker")
    new_tables = [
        name
        for name in ("emailtemplateversion", "deliveryswitch", "workerheartbeat")
        if f"post_office_{name}" in tables
    ]
    if new_tables:
        facts.append(f"+tables {','.join(new_tables)}")
    indexes = [name for name in constraints("post_office_email") if name in QUEUE_INDEXES]
    facts.append(f"queue indexes {len(indexes)}/{len(QUEUE_INDEXES)}")
    keys = {f"{table}.{key.split('->')[0]}" for table, spec in tables.items() for key in spec.get("foreign_keys", [])}
    missing = sorted(FOREIGN_KEYS - keys)
    facts.append(
        f"foreign keys {len(FOREIGN_KEYS) - len(missing)}/{len(FOREIGN_KEYS)}"
        + (f" (missing {', '.join(missing)})" if missing else "")
    )
    return facts


QUEUE_INDEXES = {
    f"post_office_email_{name}" for name in ("queue", "lease", "priority", "backend", "language", "scheduled")
}
#: The foreign keys django-post_office's tables and the shop's have before, during and after the conversion.
FOREIGN_KEYS = {
    "post_office_email.template_id",
    "post_office_emailtemplate.default_template_id",
    "post_office_log.email_id",
    "post_office_attachment_emails.email_id",
    "post_office_attachment_emails.attachment_id",
    "shop_order.confirmation_id",
    "shop_order.reminder_id",
    "shop_campaign.template_id",
}


# -- running migrate and killing it -----------------------------------------------------------------


def _migrate_and_kill(project: Project, kill: Kill, target: str, statements: int, delay: float) -> None:
    """Run ``manage.py migrate``, watch what it prints, SIGKILL it at the point asked for."""
    process = subprocess.Popen(
        [str(OUR_PYTHON), str(PROJECT / "manage.py"), "migrate"],
        cwd=PROJECT,
        env=project.env(OUR_PYTHON, DPO_SWITCH_LOG_SCHEMA="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    fd, text, position = process.stdout.fileno(), "", 0
    armed, seen, fire, read_at = False, 0, False, time.monotonic()
    deadline = time.monotonic() + TIMEOUT
    try:
        while not fire:
            if time.monotonic() > deadline:
                pytest.fail(f"{project.vendor}: migrate ran {TIMEOUT}s without reaching {kill.aim}:\n{text}")
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break  # migrate ended by itself
            text += chunk.decode(errors="replace")
            read_at = time.monotonic()
            for match in EVENT.finditer(text, position):
                position = match.end()
                event = _event(match)
                kill.events.append(event)
                kind, value = event
                if kind == "apply" and armed:
                    # The migration aimed at ended before that many statements: kill at the next one, now.
                    fire, delay = True, 0
                elif kind == "apply" and value.startswith("post_office.") and value >= f"post_office.{target}":
                    armed, fire = True, statements == 0
                elif kind == "sql" and armed:
                    seen += 1
                    fire = seen >= statements
                if fire:
                    break
        if fire:
            time.sleep(delay)
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            kill.after_ms = (time.monotonic() - read_at) * 1000
    finally:
        kill.returncode = process.wait(timeout=TIMEOUT)
        rest = process.stdout.read().decode(errors="replace")
        process.stdout.close()
    kill.killed = kill.returncode == -signal.SIGKILL
    # What it printed before it died: the last of it says where the kill landed.
    text += rest
    kill.events.extend(_event(match) for match in EVENT.finditer(text, position))
    kill.last_line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    project.outputs[f"migrate (kill {kill.number})"] = f"$ manage.py migrate  (exit {kill.returncode})\n{text}"


def _event(match: re.Match) -> tuple[str, str]:
    if match["app"]:
        return ("apply", f"{match['app']}.{match['name']}")
    if match["sql"] is not None:
        return ("sql", match["sql"])
    return ("ok", "")


def _state(project: Project, label: str) -> dict:
    out = project.workdir / f"state-{label}.json"
    project.ok(f"conversion_state ({label})", OUR_PYTHON, str(HERE / "conversion_state.py"), str(out))
    return json.loads(out.read_text())


@dataclass
class Killed:
    switch: Switch
    kills: list[Kill]
    before: dict  # conversion_state.py's view before the first migrate


@pytest.fixture(scope="module", params=KILL_VENDORS)
def vendor(request):
    return request.param


@pytest.fixture(scope="module")
def killed(vendor, tmp_path_factory):
    if not DPO_PYTHON.exists():
        pytest.fail(f"{DPO_PYTHON} is missing: run scripts/dpo-venv (make test-switch does)", pytrace=False)
    project = Project(vendor, f"{_prefix()}kill_{vendor}", tmp_path_factory.mktemp(f"kill-{vendor}"))
    project.create()
    if BORN_PYTHON:
        # As test_dpo_switch.py's switch: an older django-post_office created the database, .venv-dpo's upgraded it.
        project.ok(
            "migrate (the django-post_office it was born with)",
            BORN_PYTHON,
            str(PROJECT / "manage.py"),
            "migrate",
            DPO_SWITCH_WITHOUT_SHOP="1",
        )
    manifest_path = project.workdir / "manifest.json"
    project.ok(
        "fill_dpo.py --bulk (django-post_office)",
        DPO_PYTHON,
        str(HERE / "fill_dpo.py"),
        str(manifest_path),
        "--bulk",
        str(BULK),
    )
    manifest = json.loads(manifest_path.read_text())
    before = _state(project, "before")
    rng = random.Random(f"{SEED}-{vendor}")
    kills: list[Kill] = []
    for number, (target, (low, high), (shortest, longest)) in enumerate(PLANS[vendor], start=1):
        statements, delay = rng.randint(low, high), rng.uniform(shortest, longest)
        kill = Kill(number, f"{target} +{statements} statements +{delay * 1000:.0f} ms")
        _migrate_and_kill(project, kill, target, statements, delay)
        kill.state = _state(project, f"kill {number}")
        kill.check = project.manage(f"check (kill {number})", "check")
        kills.append(kill)
        if not kill.killed:
            break  # the conversion is over: nothing left to interrupt
    migrate = project.manage("migrate", "migrate")
    first_check = kills[0].check
    assert first_check is not None
    yield Killed(Switch(project, manifest, first_check, migrate), kills, before)
    if KEEP:
        print(f"\n{vendor}: kept database {project.db_name} and {project.workdir}")
    else:
        project.drop()


@pytest.fixture(scope="module")
def switch(killed):
    """test_dpo_switch.py's tests, imported above, read the database the killed migrates left, finished."""
    return killed.switch


# -- the tests --------------------------------------------------------------------------------------


def test_kills_landed_inside_the_conversion(killed, capsys):
    """Where each kill landed (printed), and enough of them inside 0015-0022 for the test to mean something."""
    vendor, kills = killed.switch.project.vendor, killed.kills
    report = "\n".join(kill.describe() for kill in kills)
    with capsys.disabled():
        print(f"\n{vendor}: {len(kills)} kills (POST_OFFICE_SWITCH_KILL_SEED={SEED}, {BULK} extra emails)\n{report}")
    inside = [kill for kill in kills if kill.killed and kill.phase == "mid"]
    assert len(inside) >= len(PLANS[vendor]) - 2, f"too few kills inside the conversion:\n{report}"
    if vendor == "mysql":
        # Inside a step, after some of its statements: what MariaDB keeps and the next migrate must finish.
        halfway = [kill for kill in inside if kill.step and kill.step[1] > 0 and kill.step[0] <= f"post_office.{LAST}"]
        assert len(halfway) >= len(PLANS[vendor]) // 2, f"too few kills inside a step after some statements:\n{report}"


def test_no_email_or_log_is_gone_after_any_kill(killed):
    counts = killed.before["counts"]
    for kill in killed.kills:
        got = kill.state["counts"]
        assert got["emails"] == counts["emails"], kill.describe()
        # The conversion may add a log for mail django-post_office left without a status; it removes none.
        assert got["logs"] >= counts["logs"], kill.describe()


def test_check_after_each_kill_says_how_to_go_on(killed):
    """post_office.E020 while the conversion is unfinished: "stopped after <the last step recorded>", or
    "not converted yet" when no step was; nothing once 0022 is recorded."""
    for kill in killed.kills:
        assert kill.check is not None
        output, recorded = kill.check.stdout + kill.check.stderr, kill.recorded
        assert "Traceback" not in output, f"{kill.describe()}\n{output}"
        if LAST in recorded:
            assert "post_office.E020" not in output, f"{kill.describe()}\n{output}"
            continue
        assert kill.check.returncode != 0, f"{kill.describe()}\n{output}"
        assert "post_office.E020" in output, f"{kill.describe()}\n{output}"
        assert "manage.py migrate post_office" in output, f"{kill.describe()}\n{output}"
        if recorded:
            assert f"stopped after {recorded[-1]}" in output, f"{kill.describe()}\n{output}"
        else:
            assert "not converted yet" in output, f"{kill.describe()}\n{output}"
