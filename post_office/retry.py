"""The retry policy, for ``ERROR_HANDLER`` modules: ``classify``, ``ErrorKind``, ``is_permanent``...

The code lives in :mod:`post_office.delivery.retry`.
"""

from .delivery.retry import (
    Decision,
    ErrorKind,
    backoff,
    check_error_handler,
    classify,
    classify_for,
    decide,
    is_permanent,
)

__all__ = [
    "Decision",
    "ErrorKind",
    "backoff",
    "check_error_handler",
    "classify",
    "classify_for",
    "decide",
    "is_permanent",
]
