"""django-post_office's ``setup_loghandlers``: a console handler for the ``post_office`` logger.

This app never calls it (configure the ``post_office`` logger in ``LOGGING``);
it is kept for projects that do.
"""

from __future__ import annotations

import logging

__all__ = ["setup_loghandlers"]

FORMAT = "[%(levelname)s]%(asctime)s PID %(process)d: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_loghandlers(level: str | int | None = None) -> logging.Logger:
    """Give the ``post_office`` logger a console handler at ``level`` (DEBUG) unless it has handlers; return it."""
    logger = logging.getLogger("post_office")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(level or logging.DEBUG)
    return logger
