"""Deleting old mail (``cleanup_mail``): sent and failed only, never queued or scheduled mail.

The code lives in :mod:`post_office.maintenance`; this path is kept for code that imports it.
"""

from .maintenance import cleanup_expired_mails, cutoff_for_days, delete_orphan_attachments

__all__ = ["cleanup_expired_mails", "cutoff_for_days", "delete_orphan_attachments"]
