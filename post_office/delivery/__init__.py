"""Delivery: workers claim due emails, send them on delivery threads and record the results.

The wing's rooms, from the top: ``runner`` (the long-running ``runmailer``
loop, with ``heartbeat``, ``shutdown`` and ``listener``), ``processes`` (N
forked worker processes), ``worker`` (one worker: a pass), ``pipeline`` (the
steps of a pass), ``threads`` (jobs sent on pooled connections), ``claim``,
``expiry`` and ``record`` (the database side), ``retry`` (the retry policy)
and ``stats``.

This package is also a public face (``post_office.delivery.Worker``). Its names
load on first use, so importing one room (``post_office.retry`` imports
``retry``) does not load the models.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the room that holds it.
_NAMES = {"Outcome": ".stats", "RunStats": ".stats", "Worker": ".worker", "dispatch_one": ".worker"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'post_office.delivery' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
