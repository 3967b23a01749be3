"""Signals sent by post_office.

Receivers get ``sender=Email`` and the keyword arguments documented below.
"""

from django.dispatch import Signal

#: Sent after emails are queued, once the enqueueing transaction commits.
#: Arguments: ``emails`` (list of Email).
email_queued = Signal()

#: Sent after a delivery attempt succeeded and was recorded.
#: Arguments: ``email`` (Email).
email_sent = Signal()

#: Sent after a delivery attempt failed and was recorded.
#: Arguments: ``email`` (Email), ``exception`` (the error raised),
#: ``will_retry`` (True when the email was requeued, False when it is failed for good).
email_failed = Signal()
