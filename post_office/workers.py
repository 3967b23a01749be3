"""Running delivery in one process or several (``send_queued_mail -p N``).

Claims in the database keep processes from taking the same email, so several
processes (on one host or many) simply run the same loop side by side.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

from django import db

from .delivery import RunStats, Worker


def _child(options: dict[str, Any], results: Any) -> None:
    stats = Worker(**options).run()
    results.put((stats.sent, stats.failed, stats.requeued, stats.expired))
    db.connections.close_all()


def run_processes(
    *,
    processes: int = 1,
    on_progress: Callable[[RunStats], None] | None = None,
    **options: Any,
) -> RunStats:
    """Deliver due email with ``processes`` worker processes; return the combined figures."""
    if processes <= 1:
        return Worker(on_progress=on_progress, **options).run()
    total = RunStats()
    # Forked children must not share the parent's database connection.
    db.connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    # --max-emails caps the whole run, so each child gets its share of it.
    max_emails = options.pop("max_emails", None)
    shares = [
        None if max_emails is None else max_emails // processes + (index < max_emails % processes)
        for index in range(processes)
    ]
    children = [context.Process(target=_child, args=({**options, "max_emails": share}, results)) for share in shares]
    for child in children:
        child.start()
    reported = 0
    while reported < len(children):
        try:
            sent, failed, requeued, expired = results.get(timeout=1)
        except queue.Empty:
            if not any(child.is_alive() for child in children) and results.empty():
                break  # a child died without reporting; its claims expire and are retried
            continue
        reported += 1
        total.sent += sent
        total.failed += failed
        total.requeued += requeued
        total.expired += expired
    for child in children:
        child.join()
    failed_children = [child.exitcode for child in children if child.exitcode]
    if failed_children:
        raise RuntimeError(f"{len(failed_children)} worker process(es) exited with an error: {failed_children}")
    return total
