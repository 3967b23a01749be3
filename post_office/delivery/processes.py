"""Delivery in several forked processes (``send_queued_mail -p N``, ``runmailer -p N``).

Claims in the database keep processes from taking the same email, so several
processes (on one host or many) simply run the same loop side by side.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from django import db

from .stats import RunStats
from .worker import Worker


def fork(
    target: Callable[..., tuple[int, ...]], args: Sequence[tuple[Any, ...]], *, what: str, forward_signals: bool = False
) -> list[tuple[int, ...]]:
    """Run ``target(*args[i])`` in one forked child each; return what each child that finished reported.

    With ``forward_signals`` SIGTERM and SIGINT received here are passed on to
    the children. Raises RuntimeError naming ``what`` when a child exited with an error.
    """
    db.connections.close_all()  # forked children must not share the parent's connection
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_child, args=(target, child_args, results)) for child_args in args]
    for child in children:
        child.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass

    signals = (signal.SIGTERM, signal.SIGINT) if forward_signals else ()
    previous = {signum: signal.signal(signum, forward) for signum in signals}
    reported: list[tuple[int, ...]] = []
    try:
        while len(reported) < len(children):
            try:
                reported.append(results.get(timeout=1))
            except queue.Empty:
                if not any(child.is_alive() for child in children) and results.empty():
                    break  # a child died without reporting; its claims expire and are retried
        for child in children:
            child.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    failed = [child.exitcode for child in children if child.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} {what} process(es) exited with an error: {failed}")
    return reported


def _child(target: Callable[..., tuple[int, ...]], args: tuple[Any, ...], results: multiprocessing.Queue) -> None:
    results.put(target(*args))
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
    # --max-emails caps the whole run, so each child gets its share of it.
    max_emails = options.pop("max_emails", None)
    shares = [
        None if max_emails is None else max_emails // processes + (index < max_emails % processes)
        for index in range(processes)
    ]
    total = RunStats()
    for sent, failed, requeued, expired in fork(
        _deliver, [({**options, "max_emails": s},) for s in shares], what="worker"
    ):
        total.add(RunStats(sent=sent, failed=failed, requeued=requeued, expired=expired))
    return total


def _deliver(options: dict[str, Any]) -> tuple[int, ...]:
    stats = Worker(**options).run()
    return stats.sent, stats.failed, stats.requeued, stats.expired
