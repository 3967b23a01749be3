"""The latency of one ``mail.send`` in a web request, for both packages (stdlib only: dpo_run.py imports it too).

A view that queues an email pays for one ``mail.send`` call: validation, the
INSERT and, in autocommit (Django's default, no ATOMIC_REQUESTS), the commit.
Each call is timed on its own on a warm connection; the figures are the
median and the 99th percentile of those times. With ``atomic`` each call runs
in its own ``transaction.atomic()`` block, as under ATOMIC_REQUESTS, and the
time includes the block's commit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def send_latencies(
    send: Callable[..., Any], items: Sequence[dict[str, Any]], atomic: Callable[[], Any] | None = None
) -> dict[str, object]:
    """Call ``send(**item)`` for each item, each timed alone; return the distribution in milliseconds."""
    timings = []
    for kwargs in items:
        started = time.perf_counter()
        if atomic is None:
            send(**kwargs)
        else:
            with atomic():
                send(**kwargs)
        timings.append(time.perf_counter() - started)
    timings.sort()
    total = sum(timings)
    return {
        "n": len(items),
        "elapsed": total,
        "rate": len(items) / total,
        "latency_median_ms": statistics.median(timings) * 1000,
        "latency_p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000,
        "latency_max_ms": timings[-1] * 1000,
    }
