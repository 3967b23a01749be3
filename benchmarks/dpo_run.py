"""One benchmark scenario of django-post_office 3.12.0, run in its own virtualenv.

    BENCH_DB=postgres BENCH_DB_NAME=po_bench_dpo_x .venv-dpo/bin/python benchmarks/dpo_run.py deliver --out r.json

django-post_office has the same import name as this package, so this script
runs with .venv-dpo's interpreter and only the benchmarks folder on sys.path
(never the repository root): ``post_office`` is django-post_office here. The
scenarios mirror benchmarks/ours_run.py and use the same emails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository root holds our post_office package: keep it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpo_settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from harness import TEMPLATE, QueryCounter, cpu_seconds, email_kwargs, rss_kib, template_kwargs, timed, write_json  # noqa: E402
from latency import send_latencies  # noqa: E402

import post_office  # noqa: E402
from post_office import mail  # noqa: E402
from post_office.models import STATUS, Email, EmailTemplate  # noqa: E402
from post_office.settings import get_batch_size, get_threads_per_process  # noqa: E402

if "site-packages" not in post_office.__file__:
    raise SystemExit(f"dpo_run.py imported {post_office.__file__}, not django-post_office from a virtualenv")

queries = QueryCounter().install()
_STATUS_NAMES = {STATUS.sent: "sent", STATUS.failed: "failed", STATUS.queued: "queued", STATUS.requeued: "requeued"}


def scenario_migrate(args: argparse.Namespace) -> dict[str, object]:
    call_command("migrate", verbosity=0, interactive=False)
    EmailTemplate.objects.create(**TEMPLATE)
    return {}


def scenario_queue(args: argparse.Namespace) -> dict[str, object]:
    for start in range(0, args.n, 500):
        mail.send_many([email_kwargs(seq) for seq in range(start, min(args.n, start + 500))])
    return {"queued": Email.objects.filter(status=STATUS.queued).count()}


def _timed(run, n: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return timed(run, n, queries)


def scenario_enqueue_send(args: argparse.Namespace) -> dict[str, object]:
    items = [email_kwargs(seq) for seq in range(args.n)]

    def run() -> None:
        for kwargs in items:
            mail.send(**kwargs)

    if args.atomic:
        from django.db import transaction

        def run_atomic() -> None:
            with transaction.atomic():
                run()

        result = _timed(run_atomic, args.n)
    else:
        result = _timed(run, args.n)
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


def scenario_deliver(args: argparse.Namespace) -> dict[str, object]:
    """django-post_office's send_queued_mail command, in this process (its lock file in a temp dir)."""
    expected = Email.objects.filter(status=STATUS.queued).count()
    lockfile = os.path.join(tempfile.gettempdir(), f"po_bench_dpo_{os.getpid()}")
    baseline = rss_kib()
    queries.start()
    cpu = cpu_seconds()
    started = time.perf_counter()
    call_command("send_queued_mail", processes=args.processes, lockfile=lockfile)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    count = queries.stop()
    after = rss_kib()
    by_status = dict(Email.objects.values_list("status").annotate(n=Count("id")).order_by())
    batches = -(-expected // get_batch_size())
    return {
        "n": expected,
        "elapsed": elapsed,
        "rate": expected / elapsed,
        "cpu_us_per_email": cpu / expected * 1e6 if expected else None,
        "sent": by_status.get(STATUS.sent, 0),
        "status_counts": {_STATUS_NAMES.get(k, str(k)): v for k, v in by_status.items()},
        "threads": get_threads_per_process(),
        "processes": args.processes,
        "batch_size": get_batch_size(),
        "queries": count if args.processes <= 1 else None,
        "queries_per_email": count / expected if args.processes <= 1 and expected else None,
        "queries_per_batch": count / batches if args.processes <= 1 and batches else None,
        "rss_baseline_kib": baseline["VmRSS"],
        "rss_peak_kib": after["VmHWM"],
        "rss_growth_kib": after["VmHWM"] - baseline["VmRSS"],
    }


SCENARIOS = {
    "migrate": scenario_migrate,
    "queue": scenario_queue,
    "enqueue_send": scenario_enqueue_send,
    "enqueue_send_many": scenario_enqueue_send_many,
    "enqueue_latency": scenario_enqueue_latency,
    "deliver": scenario_deliver,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--atomic", action="store_true", help="enqueue_send: the whole loop in one transaction")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = SCENARIOS[args.scenario](args)
    result.update(
        {"package": "dpo", "version": post_office.VERSION, "scenario": args.scenario, "db": connection.vendor}
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
