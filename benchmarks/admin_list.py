"""The admin's email list at a million rows (issue 11): how long each changelist page takes, in how many queries.

    .venv/bin/python benchmarks/admin_list.py --db postgres,mysql,sqlite --n 1000000
    .venv/bin/python benchmarks/admin_list.py --db postgres --plans /tmp/po_admin_plans.txt

Each database (its own, named po_admin_bench; never the test suite's) is migrated
and filled once with N emails by set-based SQL (generate_series on PostgreSQL, a
cross join of digit tables on MariaDB and SQLite), with a spread of status,
priority, template, backend alias, language, dates and recipients like
user123@example.com, and delivery logs for the failed and every tenth sent
email. Later runs reuse the filled database and only migrate it (so new indexes
get built); --refill starts again. Then, logged in as a superuser through
Django's test client, each changelist page is fetched once to warm up and
--runs times more: the table gives the median wall time, the number of SQL
queries and the slowest query; --plans writes that query's plan (EXPLAIN
ANALYZE on PostgreSQL, ANALYZE on MariaDB, EXPLAIN QUERY PLAN on SQLite).
Every database runs in a process of its own.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

DB_NAME = "po_admin_bench"
MYSQL = {
    "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MYSQL_PORT", "3306")),
    "user": os.environ.get("MYSQL_USER", "root"),
    "password": os.environ.get("MYSQL_PASSWORD", ""),
}
#: Base templates the emails use (each with a German and a French translation).
TEMPLATES = 12
CHUNK = 100_000
#: The list's URLs.
EMAILS, LOGS = "/admin/post_office/email/", "/admin/post_office/log/"

urlpatterns: list[Any] = []  # filled by configure(): this module is the ROOT_URLCONF


# -- Django, in the child process -------------------------------------------------


def database_settings(db: str) -> dict[str, dict[str, object]]:
    if db != "mysql":
        return harness.database_settings(db, DB_NAME)
    import pymysql

    pymysql.install_as_MySQLdb()
    return {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DB_NAME,
            "USER": MYSQL["user"],
            "PASSWORD": MYSQL["password"],
            "HOST": MYSQL["host"],
            "PORT": str(MYSQL["port"]),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }


def configure(db: str) -> None:
    import django
    from django.conf import settings

    locmem = "django.core.mail.backends.locmem.EmailBackend"
    settings.configure(
        SECRET_KEY="post-office-admin-bench",
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "post_office",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES=database_settings(db),
        LANGUAGES=[("en", "English"), ("de", "German"), ("fr", "French")],
        EMAIL_BACKEND="post_office.EmailBackend",
        POST_OFFICE={"BACKENDS": {"default": locmem, "transactional": locmem, "bulk": locmem}},
    )
    django.setup()
    from django.contrib import admin
    from django.urls import path

    urlpatterns.append(path("admin/", admin.site.urls))


def create_database(db: str, refill: bool) -> None:
    if db == "mysql":
        import pymysql

        connection = pymysql.connect(**MYSQL, autocommit=True)  # type: ignore[arg-type]
        with connection.cursor() as cursor:
            if refill:
                cursor.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {DB_NAME} CHARACTER SET utf8mb4")
        connection.close()
    elif refill or not harness.database_exists(db, DB_NAME):
        harness.create_empty_database(db, DB_NAME)


# -- filling ----------------------------------------------------------------------


def series(vendor: str) -> str:
    """A FROM clause yielding s = %s .. %s (both bound), one row each."""
    if vendor == "postgresql":
        return "generate_series(%s::bigint, %s::bigint) AS q(s)"
    digit = "(" + " UNION ALL ".join(f"SELECT {n} AS n" for n in range(10)) + ")"
    names = "abcde"
    number = " + ".join(f"{10**i} * {name}.n" for i, name in enumerate(names))
    joined = ", ".join(f"{digit} {name}" for name in names)
    # Five digits: 100,000 rows per chunk; the upper bound cuts the last chunk.
    return f"(SELECT %s + {number} AS s FROM {joined}) q WHERE q.s <= %s"


def expressions(vendor: str) -> dict[str, str]:
    """SQL for each column of the s-th email (s is the series' column), per database."""

    def cat(*parts: str) -> str:
        return f"CONCAT({', '.join(parts)})" if vendor == "mysql" else "(" + " || ".join(parts) + ")"

    def when(*cases: tuple[str, str], default: str) -> str:
        return "CASE " + " ".join(f"WHEN {test} THEN {value}" for test, value in cases) + f" ELSE {default} END"

    array = {"postgresql": "jsonb_build_array", "mysql": "JSON_ARRAY", "sqlite": "json_array"}[vendor]
    empty = {"postgresql": "'[]'::jsonb", "mysql": "'[]'", "sqlite": "'[]'"}[vendor]
    if vendor == "postgresql":
        at = "(%s::timestamptz + s * interval '31 seconds' {extra})"
    elif vendor == "mysql":
        at = "(%s + INTERVAL (s * 31) SECOND {extra})"
    else:
        at = "datetime(%s, '+' || (s * 31) || ' seconds' {extra})"
    extra_hour = {"postgresql": "+ interval '1 hour'", "mysql": "+ INTERVAL 1 HOUR", "sqlite": ", '+1 hour'"}[vendor]
    extra_minute = {"postgresql": "+ interval '1 minute'", "mysql": "+ INTERVAL 1 MINUTE", "sqlite": ", '+1 minute'"}[
        vendor
    ]
    text = "CAST(s AS CHAR)" if vendor == "mysql" else "CAST(s AS TEXT)"
    user = cat("'user'", text, "'@example.com'")
    team = cat("'team'", text.replace("s AS", "s %% 500 AS"), "'@example.org'")
    h = "((s * 7919) %% 1000)"
    return {
        "from_email": "'Shop <shop@example.com>'",
        "to": f"{array}({user})",
        "cc": when((f"{h} %% 20 = 0", f"{array}({team})"), default=empty),
        "bcc": empty,
        "subject": when(
            ("s %% 3 = 0", cat("'Your order '", text, "' has shipped'")),
            ("s %% 3 = 1", cat("'Welcome, user'", text)),
            default=cat("'Invoice '", text),
        ),
        "message": cat(
            "'Hello user'",
            text,
            "', this is message '",
            text,
            "'. Lorem ipsum dolor sit amet, consectetur "
            "adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.'",
        ),
        "html_message": "''",
        "alternatives": empty,
        "status": when(
            (f"{h} < 900", "0"),
            (f"{h} < 930", "1"),
            (f"{h} < 975", "2"),
            (f"{h} < 985", "3"),
            (f"{h} < 990", "4"),
            default="5",
        ),
        "priority": when(
            ("s * 31 %% 100 < 10", "0"), ("s * 31 %% 100 < 85", "1"), ("s * 31 %% 100 < 98", "2"), default="3"
        ),
        "created": at.format(extra=""),
        "last_updated": at.format(extra=extra_minute),
        "scheduled_time": when(("s * 3 %% 10 = 0", at.format(extra=extra_hour)), default="NULL"),
        "expires_at": "NULL",
        "number_of_retries": when((f"{h} >= 900 AND {h} < 930", "3"), default="0"),
        "headers": "NULL",
        "context": "NULL",
        "template_id": when(("s * 17 %% 10 >= 5", f"%s + s %% {TEMPLATES}"), default="NULL"),
        "language": when(
            ("s * 11 %% 10 < 6", "''"), ("s * 11 %% 10 < 8", "'en'"), ("s * 11 %% 10 < 9", "'de'"), default="'fr'"
        ),
        "template_language": "''",
        "template_file": "''",
        "backend_alias": when(("s * 7 %% 100 < 80", "''"), ("s * 7 %% 100 < 95", "'transactional'"), default="'bulk'"),
        "message_id": when((f"{h} < 900", cat("'<'", text, "'.bench@example.com>'")), default="NULL"),
        "claimed_by": "''",
        "lease_expires_at": "NULL",
        "pending_recipients": "NULL",
    }


def fill(n: int) -> float:
    """Insert n emails, their templates, some logs and a superuser; return the seconds it took."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from post_office.models import Email, EmailTemplate, Log

    started = time.perf_counter()
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    first = None
    for number in range(TEMPLATES):
        base = EmailTemplate.objects.create(
            name=f"bench_{number:02}", subject="Hello {{ name }}", content="Hi {{ name }}"
        )
        first = first or base.pk
    for number, base in enumerate(EmailTemplate.objects.filter(language="").order_by("pk")):
        for language in ("de", "fr"):
            EmailTemplate.objects.create(
                name=base.name, language=language, default_template=base, subject="Hallo", content=f"{number}"
            )
    assert first is not None
    vendor = connection.vendor
    columns = expressions(vendor)
    quote = connection.ops.quote_name
    table = quote(Email._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(name) for name in columns)}) "
        f"SELECT {', '.join(columns.values())} FROM {series(vendor)}"
    )
    base_time = timezone_now() - datetime.timedelta(seconds=31 * n)
    # Parameters in order: the timestamps (created, last_updated, scheduled_time), the template, the bounds.
    for low in range(1, n + 1, CHUNK):
        high = min(low + CHUNK - 1, n)
        params = [base_time, base_time, base_time, first, low, high]
        if vendor == "sqlite":
            params[:3] = [base_time.strftime("%Y-%m-%d %H:%M:%S")] * 3
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
        harness_log(f"  {high:,} emails")
    log_table = quote(Log._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {log_table} ({quote('email_id')}, {quote('date')}, {quote('status')}, "
            f"{quote('exception_type')}, {quote('message')}, {quote('worker')}) "
            f"SELECT id, last_updated, status, CASE WHEN status = 1 THEN 'SMTPRecipientsRefused' ELSE '' END, "
            f"CASE WHEN status = 1 THEN '550 mailbox unavailable' ELSE '' END, '' FROM {table} "
            f"WHERE status = 1 OR (status = 0 AND id %% 10 = 0)",
            [],
        )
    return time.perf_counter() - started


def timezone_now() -> datetime.datetime:
    from django.utils import timezone

    return timezone.now().replace(microsecond=0)


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Autovacuum would do this on a live database; the visibility map lets counts use the index only.
            cursor.execute("VACUUM ANALYZE post_office_email")
            cursor.execute("VACUUM ANALYZE post_office_log")
        elif connection.vendor == "mysql":
            cursor.execute("ANALYZE TABLE post_office_email, post_office_log")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")


def harness_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- measuring --------------------------------------------------------------------


def scenarios() -> list[tuple[str, str, dict[str, str]]]:
    from post_office.models import Email, EmailTemplate

    template = EmailTemplate.objects.filter(language="").order_by("pk").first()
    assert template is not None
    last = Email.objects.order_by("-id").values_list("created", "id").first()
    assert last is not None
    newest, top = last
    # As the date filters' own links spell them.
    week_ago = f"{(newest - datetime.timedelta(days=7)).date().isoformat()} 00:00:00+00:00"
    tomorrow = f"{(newest + datetime.timedelta(days=1)).date().isoformat()} 00:00:00+00:00"
    far = max(2, top // 200)
    month_ago = newest - datetime.timedelta(days=30)
    someone = f"user{top // 2}@example.com"
    return [
        ("emails: no filter", EMAILS, {}),
        ("status = failed", EMAILS, {"status__exact": "1"}),
        ("status = queued", EMAILS, {"status__exact": "2"}),
        ("priority = high", EMAILS, {"priority__exact": "2"}),
        ("priority = now", EMAILS, {"priority__exact": "3"}),
        ("template", EMAILS, {"template__id__exact": str(template.pk)}),
        ("backend = bulk", EMAILS, {"backend_alias": "bulk"}),
        ("backend = default", EMAILS, {"backend_alias": "default"}),
        ("language = de", EMAILS, {"language": "de"}),
        ("created: past 7 days", EMAILS, {"created__gte": week_ago, "created__lt": tomorrow}),
        (
            "created: a month (hierarchy)",
            EMAILS,
            {"created__year": str(month_ago.year), "created__month": str(month_ago.month)},
        ),
        ("scheduled: has a date", EMAILS, {"scheduled_time__isnull": "False"}),
        ("scheduled: past 7 days", EMAILS, {"scheduled_time__gte": week_ago, "scheduled_time__lt": tomorrow}),
        ("search: full address", EMAILS, {"q": someone}),
        ("search: part of an address", EMAILS, {"q": someone.split("@")[0][:-1]}),
        ("search: subject word", EMAILS, {"q": "shipped"}),
        ("failed + bulk", EMAILS, {"status__exact": "1", "backend_alias": "bulk"}),
        ("queued + high + de", EMAILS, {"status__exact": "2", "priority__exact": "2", "language": "de"}),
        ("template + failed", EMAILS, {"template__id__exact": str(template.pk), "status__exact": "1"}),
        ("failed, sorted by subject", EMAILS, {"status__exact": "1", "o": "3"}),
        ("page 2", EMAILS, {"p": "2"}),
        (f"page {far:,} (the middle)", EMAILS, {"p": str(far)}),
        ("failed, page 100", EMAILS, {"status__exact": "1", "p": "100"}),
        ("logs: no filter", LOGS, {}),
        ("logs: failed", LOGS, {"status__exact": "1"}),
        ("logs: page 2", LOGS, {"p": "2"}),
    ]


def explain(sql: str) -> str:
    from django.db import connection

    prefix = {"postgresql": "EXPLAIN (ANALYZE, BUFFERS) ", "mysql": "ANALYZE ", "sqlite": "EXPLAIN QUERY PLAN "}
    with connection.cursor() as cursor:
        cursor.execute(prefix[connection.vendor] + sql)
        return "\n".join("  ".join(str(cell) for cell in row) for row in cursor.fetchall())


def measure(runs: int, with_plans: bool) -> list[dict[str, Any]]:
    from django.contrib.admin.views.main import ChangeList
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    # The changelist each page built (the test client's response.context needs the test instrumentation).
    seen: dict[str, ChangeList] = {}
    get_results = ChangeList.get_results

    def spy(changelist: ChangeList, request: Any) -> None:
        get_results(changelist, request)
        seen["cl"] = changelist

    ChangeList.get_results = spy  # type: ignore[method-assign]
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    rows = []
    for name, url, params in scenarios():
        times, captured = [], None
        for run in range(runs + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url, params)
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {url} {params} gave {response.status_code} {response.get('Location')}")
            if run:
                times.append(elapsed)
                captured = queries.captured_queries
        assert captured is not None
        slowest = max(captured, key=lambda query: float(query["time"]))
        cl = seen["cl"]
        row = {
            "scenario": name,
            "url": f"{url}?{'&'.join(f'{k}={v}' for k, v in params.items())}",
            "ms": round(statistics.median(times) * 1000, 1),
            "queries": len(captured),
            "slowest_ms": round(float(slowest["time"]) * 1000, 1),
            "slowest_sql": slowest["sql"],
            "count": cl.result_count,
            "estimated": bool(getattr(cl.paginator, "estimated", False)),
        }
        if with_plans:
            row["plan"] = explain(slowest["sql"])
        harness_log(f"  {name}: {row['ms']} ms, {row['queries']} queries, slowest {row['slowest_ms']} ms")
        rows.append(row)
    return rows


def child(args: argparse.Namespace) -> None:
    db = args.child
    create_database(db, args.refill)
    configure(db)
    from django.core.management import call_command

    from post_office.models import Email

    call_command("migrate", verbosity=0)
    result: dict[str, Any] = {"db": db, "n": args.n}
    if Email.objects.order_by().values("pk")[:1].exists() and not args.refill:
        harness_log(f"{db}: reusing the filled database")
    else:
        harness_log(f"{db}: filling {args.n:,} emails")
        result["fill_seconds"] = round(fill(args.n), 1)
    analyze()
    result["rows"] = measure(args.runs, bool(args.plans))
    harness.write_json(args.out, result)


# -- the parent: one child per database, one table ----------------------------------


def table(results: list[dict[str, Any]]) -> str:
    dbs = [result["db"] for result in results]
    head = "| page | " + " | ".join(f"{db} ms | queries | slowest ms" for db in dbs) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(dbs)]
    for index, row in enumerate(results[0]["rows"]):
        cells = []
        for result in results:
            other = result["rows"][index]
            cells.append(f"{other['ms']} | {other['queries']} | {other['slowest_ms']}")
        lines.append(f"| {row['scenario']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="postgres", help="comma-separated: postgres, mysql, sqlite")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--refill", action="store_true", help="drop and fill the database again")
    parser.add_argument("--plans", help="write the slowest query's plan of each page to this file")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    results = []
    for db in args.db.split(","):
        out = Path(f"/tmp/po_admin_bench_{db}.json")
        command = [
            sys.executable,
            __file__,
            "--child",
            db,
            "--out",
            str(out),
            "--n",
            str(args.n),
            "--runs",
            str(args.runs),
        ]
        command += ["--refill"] if args.refill else []
        command += ["--plans", args.plans] if args.plans else []
        subprocess.run(command, check=True)
        results.append(json.loads(out.read_text()))
    print(table(results))
    for result in results:
        if "fill_seconds" in result:
            print(f"\n{result['db']}: filled {result['n']:,} emails in {result['fill_seconds']} s")
    if args.plans:
        with open(args.plans, "w") as plans:
            for result in results:
                for row in result["rows"]:
                    plans.write(f"== {result['db']}: {row['scenario']} ({row['slowest_ms']} ms)\n{row['url']}\n")
                    plans.write(f"{row['slowest_sql']}\n{row['plan']}\n\n")
    if args.json:
        harness.write_json(args.json, results)


if __name__ == "__main__":
    main()
