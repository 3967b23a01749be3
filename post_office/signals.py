"""Signals sent by post_office.

Receivers get ``sender=Email`` and the keyword arguments documented below.
"""

from django.dispatch import Signal

#: Sent after emails are queued, once the enqueueing transaction commits.
#: Arguments: ``emails`` (list of Email).
email_queued = Signal()

#: Sent once per committed transaction that queued emails, however many ``send()`` calls it made
#: (the Celery trigger starts one delivery task per commit from it). Arguments: ``count`` (emails
#: queued), ``by_priority`` (``{"medium": 3, "high": 1}``: how many of each priority) and ``high``
#: (ids of the high-priority emails; None when there were more than 1000).
queue_committed = Signal()

#: Sent after a delivery attempt succeeded and was recorded.
#: Arguments: ``email`` (Email).
email_sent = Signal()

#: Sent after a delivery attempt failed and was recorded.
#: Arguments: ``email`` (Email), ``exception`` (the error raised),
#: ``will_retry`` (True when the email was requeued, False when it is failed for good).
email_failed = Signal()
