"""Python function calls per email of send(), send_many() and delivery: a figure the box's load cannot move.

CPU time per email moves by 10-20% between runs on a shared box; the number of
Python calls the code makes per email does not. Compare two checkouts with it,
e.g. before and after a refactor::

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/calls.py --tree /tmp/before
    .venv/bin/python benchmarks/calls.py

Each figure is Python-level calls (profiler "call" events, every thread) per
email, on a fresh SQLite file; delivery uses the counting backend (no SMTP).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(HERE.parent), help="the checkout whose post_office is measured")
    parser.add_argument("--n", type=int, default=500, help="emails per measurement")
    args = parser.parse_args()
    tree = str(Path(args.tree).resolve())
    sys.path.insert(0, tree)
    sys.path.insert(1, str(HERE))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ["BENCH_DB"] = "sqlite"
    os.environ["BENCH_BACKEND"] = "counting"
    os.environ["BENCH_DB_NAME"] = str(Path(tempfile.mkdtemp(prefix="po_bench_calls")) / "calls.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0)
    import post_office
    from post_office import mail
    from post_office.delivery import Worker
    from post_office.models import Email, EmailTemplate

    if not str(post_office.__file__).startswith(tree):
        raise SystemExit(f"post_office was imported from {post_office.__file__}, not from {tree}")
    EmailTemplate.objects.create(
        name="t", subject="Hi {{ name }}", content="Hello {{ name }}, " + "x" * 300, html_content="<p>{{ name }}</p>"
    )
    n = args.n
    plain = {"sender": "s@example.com", "subject": "S", "message": "body " * 50, "html_message": "<p>x</p>" * 50}

    def send() -> None:
        with transaction.atomic():
            for i in range(n):
                mail.send([f"u{i}@example.com"], **plain)
            transaction.set_rollback(True)

    def send_many() -> None:
        with transaction.atomic():
            mail.send_many(
                [
                    {
                        "recipients": [f"u{i}@example.com"],
                        "sender": "s@example.com",
                        "template": "t",
                        "context": {"name": i},
                    }
                    for i in range(n)
                ]
            )
            transaction.set_rollback(True)

    def deliver() -> None:
        stats = Worker(threads=4).run()
        assert stats.sent == n, stats.summary()

    def queue_for_delivery() -> None:
        Email.objects.all().delete()
        mail.send_many([{"recipients": [f"u{i}@example.com"], **plain} for i in range(n)])

    print(f"post_office from {tree}, {n} emails each: Python calls per email")
    for name, measured, prepare in (
        ("send() in one transaction", send, None),
        ("send_many() from a template", send_many, None),
        ("delivery, counting backend, 4 threads", deliver, queue_for_delivery),
    ):
        for _run in ("warm-up", "measured"):  # the first run fills caches (compiled templates, statements)
            if prepare is not None:
                prepare()
            calls = count_calls(measured)
        print(f"  {name}: {calls / n:.1f}")


def count_calls(function: Callable[[], None]) -> int:
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return count


if __name__ == "__main__":
    main()
