"""One benchmark scenario of this package, in a fresh process (benchmarks/run.py starts it).

    BENCH_DB=postgres BENCH_DB_NAME=po_bench_x python benchmarks/ours_run.py deliver --out result.json

The database and backend come from the environment (see benchmarks/settings.py).
Each scenario writes one JSON object to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402
from django.db.models import Count, Max, Min  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    TEMPLATE,
    QueryCounter,
    cpu_seconds,
    email_kwargs,
    rss_kib,
    template_kwargs,
    timed,
    write_json,
)
from benchmarks.latency import send_latencies  # noqa: E402
from post_office import mail  # noqa: E402
from post_office.conf import settings as po_settings  # noqa: E402
from post_office.delivery import RunStats, Worker, claim, expiry  # noqa: E402
from post_office.delivery.processes import run_processes  # noqa: E402
from post_office.models import STATUS, DeliverySwitch, Email, EmailTemplate, Log  # noqa: E402

queries = QueryCounter().install()


def scenario_migrate(args: argparse.Namespace) -> dict[str, object]:
    call_command("migrate", verbosity=0, interactive=False)
    EmailTemplate.objects.create(**TEMPLATE)
    return {}


def scenario_queue(args: argparse.Namespace) -> dict[str, object]:
    """Fill the queue (setup, not measured): send_many in chunks of 500."""
    for start in range(0, args.n, 500):
        mail.send_many([email_kwargs(seq) for seq in range(start, min(args.n, start + 500))])
    return {"queued": Email.objects.filter(status=STATUS.queued).count()}


def _timed(run, n: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return timed(run, n, queries)


def scenario_enqueue_send(args: argparse.Namespace) -> dict[str, object]:
    """mail.send() in a loop, each in its own transaction (autocommit), as a web request would."""
    items = [email_kwargs(seq) for seq in range(args.n)]

    def run() -> None:
        for kwargs in items:
            mail.send(**kwargs)

    def run_atomic() -> None:
        # The library's own cost, without a commit (and its fsync) per email.
        with transaction.atomic():
            run()

    result = _timed(run_atomic if args.atomic else run, args.n)
    result["stored"] = Email.objects.count()
    result["atomic"] = args.atomic
    return result


def scenario_enqueue_latency(args: argparse.Namespace) -> dict[str, object]:
    """mail.send() timed call by call, each its own transaction, as a view queueing one email pays it.

    Autocommit (Django's default), or with --atomic one transaction.atomic() block per call (ATOMIC_REQUESTS).
    """
    from django.db import transaction

    items = [email_kwargs(seq) for seq in range(args.n)]
    mail.send(**email_kwargs(args.n))  # a warm connection, as a running site has
    queries.start()
    result = send_latencies(mail.send, items, transaction.atomic if args.atomic else None)
    result["queries"] = queries.stop()
    result["queries_per_email"] = result["queries"] / args.n  # type: ignore[operator]
    result["stored"] = Email.objects.count() - 1
    result["atomic"] = args.atomic
    return result


def scenario_enqueue_send_many(args: argparse.Namespace) -> dict[str, object]:
    """mail.send_many() with a database template and a context per email, in chunks."""
    chunks = [
        [template_kwargs(seq) for seq in range(start, min(args.n, start + args.chunk))]
        for start in range(0, args.n, args.chunk)
    ]

    def run() -> None:
        for chunk in chunks:
            mail.send_many(chunk)

    result = _timed(run, args.n)
    result["stored"] = Email.objects.count()
    result["chunk"] = args.chunk
    return result


def paired_rounds(
    variants: dict[str, list[models.Index]], paths: dict[str, Callable[[], object]], reps: int
) -> dict[str, dict[str, list[float]]]:
    """Time each path with each variant's set of Email indexes, ``reps`` rounds; the timings by variant and path.

    Each path runs in one transaction, rolled back so every round starts from
    the same table; between variants the indexes that differ are dropped and
    made again (the order rotates each round), so load on the box moves them
    alike. The indexes of the first variant are left in place.
    """
    present = list(variants[next(iter(variants))])

    def use(wanted: list[models.Index]) -> None:
        with connection.schema_editor() as editor:
            for index in [index for index in present if index not in wanted]:
                editor.remove_index(Email, index)
            for index in [index for index in wanted if index not in present]:
                editor.add_index(Email, index)
        present[:] = wanted

    timings: dict[str, dict[str, list[float]]] = {label: {name: [] for name in paths} for label in variants}
    labels = list(variants)
    for round_ in range(reps):
        for label in labels[round_ % len(labels) :] + labels[: round_ % len(labels)]:
            use(variants[label])
            for name, run in paths.items():
                with transaction.atomic():
                    started = time.perf_counter()
                    run()
                    timings[label][name].append(time.perf_counter() - started)
                    transaction.set_rollback(True)
    use(variants[labels[0]])
    return timings


def paired_ratio(faster: list[float], slower: list[float]) -> float:
    """The median over rounds of one variant's rate over another's (timings of the same round)."""
    return statistics.median(b / a for a, b in zip(faster, slower, strict=True))


def scenario_enqueue_index(args: argparse.Namespace) -> dict[str, object]:
    """What the queue's indexes cost enqueue: with both (claim, expiry), with the claim index only, with neither.

    Each round times ``--n`` emails queued by send() (one by one), by send_many()
    (from a template) and by send_many() with an expiry on every email (what the
    partial expiry index holds an entry for), each in one transaction, once for
    each set of indexes (paired_rounds).
    """
    claim_index, expiry_index = claim.claim_index(), expiry.expiry_index()
    singles = [email_kwargs(seq) for seq in range(args.n)]
    many = [template_kwargs(seq) for seq in range(args.n)]
    expires = timezone.now() + datetime.timedelta(days=30)
    expiring = [{**kwargs, "expires_at": expires} for kwargs in many]
    paths: dict[str, Callable[[], object]] = {
        "send": lambda: [mail.send(**kwargs) for kwargs in singles],
        "send_many": lambda: mail.send_many(many),
        "send_many_expiring": lambda: mail.send_many(expiring),
    }
    variants = {"with": [claim_index, expiry_index], "claim_only": [claim_index], "without": []}
    timings = paired_rounds(variants, paths, args.reps)
    result: dict[str, object] = {"n": args.n, "rounds": args.reps}
    for name in paths:
        both, claim_only, none = (timings[label][name] for label in variants)
        result[name] = {
            "with_median": statistics.median(both),
            "claim_only_median": statistics.median(claim_only),
            "without_median": statistics.median(none),
            # Both indexes against none; the expiry index alone (both against the claim index only).
            "ratio_median": paired_ratio(both, none),
            "expiry_ratio_median": paired_ratio(both, claim_only),
            "rate_with": args.n / statistics.median(both),
            "rate_claim_only": args.n / statistics.median(claim_only),
            "rate_without": args.n / statistics.median(none),
        }
    return result


def scenario_enqueue_send_indexes(args: argparse.Namespace) -> dict[str, object]:
    """What mail.send's INSERT saves by not writing the indexes migration 0026 made partial or single.

    Before 0026: a whole ``(status, lease_expires_at)`` lease index, a whole
    ``scheduled_time`` index and, on PostgreSQL, message_id's second (LIKE)
    index; after: the model's (models.LeaseIndex, models.PresentIndex, one
    message_id index). send() one by one and a templated send_many(), each in
    one transaction (so the figure is the statements' own cost, without the
    commit), ``--reps`` paired rounds.
    """
    current = {index.name: index for index in Email._meta.indexes}
    after = [current["post_office_email_lease"], current["post_office_email_scheduled"]]
    before = [
        models.Index(fields=["status", "lease_expires_at"], name="post_office_email_lease"),
        models.Index(fields=["scheduled_time"], name="post_office_email_scheduled"),
    ]
    if connection.vendor == "postgresql":
        before.append(
            models.Index(fields=["message_id"], name="po_bench_message_id_like", opclasses=["varchar_pattern_ops"])
        )
    singles = [email_kwargs(seq) for seq in range(args.n)]
    many = [template_kwargs(seq) for seq in range(args.n)]
    paths: dict[str, Callable[[], object]] = {
        "send": lambda: [mail.send(**kwargs) for kwargs in singles],
        "send_many": lambda: mail.send_many(many),
    }
    timings = paired_rounds({"after": after, "before": before}, paths, args.reps)
    result: dict[str, object] = {"n": args.n, "rounds": args.reps}
    for name in paths:
        result[name] = {
            "ratio_median": paired_ratio(timings["after"][name], timings["before"][name]),
            "rate_after": args.n / statistics.median(timings["after"][name]),
            "rate_before": args.n / statistics.median(timings["before"][name]),
        }
    return result


def scenario_deliver(args: argparse.Namespace) -> dict[str, object]:
    """Deliver the whole queue: Worker().run() in this process, or run_processes (send_queued_mail -p N).

    ``--logs N``: N Log rows (of 1,000 finished emails) in the table first, as LOG_LEVEL 2 leaves them.
    """
    if args.logs:
        insert_rows(1000)
        insert_logs(args.logs)
    expected = Email.objects.filter(status=STATUS.queued).count()
    threads = args.threads or po_settings.THREADS_PER_PROCESS
    peak_sampled = 0

    next_sample = 0.0

    def sample(stats: RunStats) -> None:
        # At most 4 times a second: reading /proc costs time inside the measured run
        # (the peak the memory target uses is the kernel's VmHWM, not this sample).
        nonlocal peak_sampled, next_sample
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 0.25
            peak_sampled = max(peak_sampled, rss_kib()["VmRSS"])

    baseline = rss_kib()
    queries.start()
    cpu = cpu_seconds()
    started = time.perf_counter()
    if args.processes > 1:
        stats = run_processes(processes=args.processes, threads=threads)
    else:
        stats = Worker(threads=threads, on_progress=sample).run()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    count = queries.stop()
    after = rss_kib()
    # The queue's emails only (--logs adds finished "Old email" rows).
    delivered = Email.objects.exclude(subject__startswith="Old email ")
    by_status = dict(delivered.values_list("status").annotate(n=Count("id")).order_by())
    batches = -(-expected // po_settings.BATCH_SIZE)
    return {
        "n": expected,
        "elapsed": elapsed,
        "rate": expected / elapsed,
        "cpu_us_per_email": cpu / expected * 1e6 if expected else None,
        "sent": stats.sent,
        "failed": stats.failed,
        "requeued": stats.requeued,
        "status_counts": {STATUS(k).name: v for k, v in by_status.items()},
        "threads": threads,
        "processes": args.processes,
        "max_connections": po_settings.max_connections("default") or threads,
        "batch_size": po_settings.BATCH_SIZE,
        # With -p N the children's queries are not visible here (see RESULTS.md).
        "queries": count if args.processes <= 1 else None,
        "queries_per_email": count / expected if args.processes <= 1 and expected else None,
        "queries_per_batch": count / batches if args.processes <= 1 and batches else None,
        "rss_baseline_kib": baseline["VmRSS"],
        "rss_peak_kib": after["VmHWM"],
        "rss_peak_sampled_kib": peak_sampled,
        "rss_growth_kib": after["VmHWM"] - baseline["VmRSS"],
        "log_rows_before": args.logs,
    }


def insert_rows(count: int, queued: bool = False, expiring_every: int = 0) -> None:
    """Insert ``count`` finished emails (90% sent, 10% failed), or queued ones, in one SQL statement.

    PostgreSQL generates them with generate_series, MariaDB from its sequence
    engine, SQLite with a recursive CTE; columns not named here get their model default.
    ``expiring_every`` N: every Nth row expires in 30 days (the others never).
    """
    vendor = connection.vendor
    postgres, mysql = vendor == "postgresql", vendor == "mysql"
    quote = connection.ops.quote_name
    # '%%' because the statement has parameters.
    if postgres:
        created = "now() - interval '120 days' + x * interval '1 second'"
        expires = "now() + interval '30 days'"
        to, subject = "jsonb_build_array('old' || x || '@example.com')", "'Old email ' || x"
    elif mysql:
        created = "UTC_TIMESTAMP(6) - INTERVAL 120 DAY + INTERVAL x SECOND"
        expires = "UTC_TIMESTAMP(6) + INTERVAL 30 DAY"
        to, subject = "JSON_ARRAY(CONCAT('old', x, '@example.com'))", "CONCAT('Old email ', x)"
    else:
        created = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-120 days', '+' || x || ' seconds')"
        expires = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '+30 days')"
        to, subject = "json_array('old' || x || '@example.com')", "'Old email ' || x"
    expressions = {
        "to": to,
        "subject": subject,
        "status": f"{STATUS.queued:d}" if queued else "CASE WHEN x %% 10 = 0 THEN 1 ELSE 0 END",
        "created": created,
        "last_updated": created,
    }
    if expiring_every:
        expressions["expires_at"] = f"CASE WHEN x %% {int(expiring_every)} = 0 THEN {expires} END"
    constants = {
        "from_email": "Benchmarks <bench@example.com>",
        "message": "An email that was delivered long ago. " * 4,
        "headers": {"X-Old": "1"},
    }
    columns, selects, params = [], [], []
    for model_field in Email._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(quote(model_field.column))
        if model_field.name in expressions:
            selects.append(expressions[model_field.name])
            continue
        if model_field.name in constants:
            value = constants[model_field.name]
        else:
            value = model_field.get_default()  # '' for text columns without a default
        selects.append("%s")
        params.append(model_field.get_db_prep_save(value, connection))
    table = quote(Email._meta.db_table)
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selects)}"
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(f"{insert} FROM generate_series(1, %s) AS s(x)", [*params, count])
        elif mysql:
            # seq_1_to_<n> is a table of the sequence engine (MariaDB 10.0+); the count is part of its name.
            cursor.execute(f"{insert} FROM (SELECT seq AS x FROM seq_1_to_{int(count)}) AS s", params)
        else:
            cursor.execute(
                f"WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < %s) {insert} FROM seq",
                [count, *params],
            )


def insert_logs(count: int) -> None:
    """Insert ``count`` Log rows of the finished emails in the table (sent attempts, up to a year old), in one statement."""
    vendor = connection.vendor
    quote = connection.ops.quote_name
    first, last = Email.objects.filter(status__in=(STATUS.sent, STATUS.failed)).aggregate(Min("id"), Max("id")).values()
    span = last - first + 1
    if vendor == "postgresql":
        date, series = "now() - (x %% 525600) * interval '1 minute'", "generate_series(1, %s) AS s(x)"
    elif vendor == "mysql":
        date, series = (
            "UTC_TIMESTAMP(6) - INTERVAL (x %% 525600) MINUTE",
            f"(SELECT seq AS x FROM seq_1_to_{int(count)}) AS s",
        )
    else:
        date = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (x %% 525600) || ' minutes')"
        series = "seq"
    table = quote(Log._meta.db_table)
    columns = ", ".join(
        quote(Log._meta.get_field(name).column)
        for name in ("email", "date", "status", "exception_type", "message", "worker")
    )
    insert = (
        f"INSERT INTO {table} ({columns}) SELECT {int(first)} + (x %% {int(span)}), {date}, {STATUS.sent:d}, '', '', "
        f"'bench:0123456789abcdef' FROM {series}"
    )
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(
                f"WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < %s) {insert}", [count]
            )
        elif vendor == "postgresql":
            cursor.execute(insert, [count])
            cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            cursor.execute(insert, [])


def scenario_claim(args: argparse.Namespace) -> dict[str, object]:
    """Time Worker.claim(BATCH_SIZE) with ``--old`` finished emails (and ``--backlog`` more queued) in the table."""
    started = time.perf_counter()
    insert_rows(args.old)
    if args.backlog:
        insert_rows(args.backlog, queued=True)
    for start in range(0, args.queued, 500):
        mail.send_many([email_kwargs(seq) for seq in range(start, min(args.queued, start + 500))])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # What autovacuum would have done by the time a table holds this many old rows.
            cursor.execute("VACUUM ANALYZE post_office_email")
    elif connection.vendor == "mysql":
        with connection.cursor() as cursor:
            # InnoDB's statistics, as its automatic recalculation would have left them.
            cursor.execute("ANALYZE TABLE post_office_email")
            cursor.fetchall()
    setup = time.perf_counter() - started

    worker = Worker()
    batch = po_settings.BATCH_SIZE
    token, emails = worker.claim(batch)  # warm the caches
    worker.release(token, emails)
    claims, pass_starts, counts = [], [], []
    for _ in range(args.reps):
        queries.start()
        t0 = time.perf_counter()
        token, emails = worker.claim(batch)
        claims.append(time.perf_counter() - t0)
        counts.append(queries.stop())
        assert len(emails) == batch, len(emails)
        worker.release(token, emails)
        # What run_pass does before claiming, and once per batch.
        t0 = time.perf_counter()
        worker.requeue_stale_leases()
        worker.fail_expired()
        DeliverySwitch.is_paused()
        pass_starts.append(time.perf_counter() - t0)
    return {
        "old_rows": args.old,
        "backlog": args.backlog,
        "queued": args.queued,
        "batch_size": batch,
        "setup_seconds": setup,
        "claim_median": statistics.median(claims),
        "claim_mean": statistics.fmean(claims),
        "claim_min": min(claims),
        "claim_queries": counts[-1],
        "pass_start_median": statistics.median(pass_starts),
        "plan": claim.explain(batch),
        "total_rows": Email.objects.count(),
    }


def scenario_pass_start(args: argparse.Namespace) -> dict[str, object]:
    """Time what ``Worker.run_pass`` does before its first claim, with ``--backlog`` queued emails in the table.

    Besides 1,000 finished emails: the backlog (every 10th expires in 30 days,
    the rest never), a claimed batch in flight (lease not run out) and, before
    each repetition (not timed), 10 queued emails that expired a minute ago, so
    each pass start fails and logs a few, as a pass does when mail expires.
    Each step is timed alone: requeue stale leases, fail expired mail, the pause switch.
    """
    started = time.perf_counter()
    insert_rows(1000)
    insert_rows(args.backlog, queued=True, expiring_every=10)
    analyze_email_table()
    # The setup wrote the whole table just now: let the disk take it before timing commits (SQLite's
    # fsyncs otherwise wait for the operating system's writeback of those pages).
    os.sync()
    setup = time.perf_counter() - started

    worker = Worker(lease_seconds=3600)
    token, in_flight = worker.claim(po_settings.BATCH_SIZE)  # another worker's batch: its lease is live
    steps = {
        "requeue": worker.requeue_stale_leases,
        "expire": worker.fail_expired,
        "pause": DeliverySwitch.is_paused,
    }
    timings: dict[str, list[float]] = {name: [] for name in [*steps, "total"]}
    expired = timezone.now() - datetime.timedelta(minutes=1)
    for rep in range(args.reps + 1):
        Email.objects.bulk_create(
            Email(from_email="bench@example.com", to=["x@example.com"], subject="expired", expires_at=expired)
            for _ in range(10)
        )
        total = 0.0
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            elapsed = time.perf_counter() - t0
            total += elapsed
            if rep:  # the first round warms the caches
                timings[name].append(elapsed)
        if rep:
            timings["total"].append(total)
    assert worker.stats.expired == 10 * (args.reps + 1), worker.stats.expired
    assert Email.objects.filter(claimed_by=token).count() == len(in_flight)
    result: dict[str, object] = {
        "backlog": args.backlog,
        "expiring": Email.objects.queued().filter(expires_at__isnull=False).count(),
        "setup_seconds": setup,
        "reps": args.reps,
        "plans": expiry.explain(),
        "total_rows": Email.objects.count(),
    }
    for name, values in timings.items():
        result[f"{name}_median"] = statistics.median(values)
        result[f"{name}_min"] = min(values)
    return result


def analyze_email_table() -> None:
    """Planner statistics as the database's own upkeep would have left them (SQLite gets none)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE post_office_email")
        elif connection.vendor == "mysql":
            cursor.execute("ANALYZE TABLE post_office_email")
            cursor.fetchall()


SCENARIOS = {
    "migrate": scenario_migrate,
    "queue": scenario_queue,
    "enqueue_send": scenario_enqueue_send,
    "enqueue_send_many": scenario_enqueue_send_many,
    "enqueue_index": scenario_enqueue_index,
    "enqueue_send_indexes": scenario_enqueue_send_indexes,
    "enqueue_latency": scenario_enqueue_latency,
    "deliver": scenario_deliver,
    "claim": scenario_claim,
    "pass_start": scenario_pass_start,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="delivery threads (0: THREADS_PER_PROCESS)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--atomic", action="store_true", help="enqueue_send: the whole loop in one transaction")
    parser.add_argument("--old", type=int, default=1000, help="claim: finished emails in the table")
    parser.add_argument("--queued", type=int, default=2000, help="claim: queued emails")
    parser.add_argument("--backlog", type=int, default=0, help="claim, pass_start: queued emails, inserted in bulk")
    parser.add_argument("--reps", type=int, default=30, help="claim, pass_start, enqueue_index: repetitions")
    parser.add_argument("--logs", type=int, default=0, help="deliver: Log rows in the table first")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = SCENARIOS[args.scenario](args)
    result.update({"package": "ours", "scenario": args.scenario, "db": connection.vendor})
    write_json(args.out, result)


if __name__ == "__main__":
    main()
