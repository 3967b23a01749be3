"""Delivery: workers claim due emails, send them on delivery threads and record the results.

The wing's rooms, from the top: ``runner`` (the long-running ``runmailer``
loop, with ``heartbeat``, ``shutdown`` and ``listener``), ``processes`` (N
forked worker processes), ``worker`` (one worker: a pass), ``pipeline`` (the
steps of a pass), ``threads`` (jobs sent on pooled connections), ``claim`` and
``record`` (the database side), ``retry`` (the retry policy) and ``stats``.
"""

from .stats import Outcome, RunStats
from .worker import Worker, dispatch_one

__all__ = ["Outcome", "RunStats", "Worker", "dispatch_one"]
