"""Signals sent by post_office.

Receivers get ``sender=Email`` and the keyword arguments documented below.
"""

from django.dispatch import Signal

#: Sent after emails are queued, once the enqueueing transaction commits.
#: Arguments: ``emails`` (list of Email).
email_queued = Signal()
