"""The queue's states and priorities (the models' choices, also read by validation)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class STATUS(models.IntegerChoices):
    """Delivery state; the first four keep django-post_office's values."""

    sent = 0, _("sent")
    failed = 1, _("failed")
    queued = 2, _("queued")
    requeued = 3, _("requeued")
    sending = 4, _("sending")
    #: Cancelled in the admin: never sent, until someone restores it.
    cancelled = 5, _("cancelled")


class PRIORITY(models.IntegerChoices):
    low = 0, _("low")
    medium = 1, _("medium")
    high = 2, _("high")
    now = 3, _("now")


class RecipientDeliveryStatus(models.IntegerChoices):
    """What became of the email at the recipient's end, as a provider's webhook reports it.

    django-post_office 3.9's values; nothing in this package sets them: they are the project's to record
    (``Email.recipient_delivery_status``, and ``Log`` rows with these statuses).
    """

    ACCEPTED = 10, _("Accepted")
    DELIVERED = 20, _("Delivered")
    OPENED = 30, _("Opened")
    CLICKED = 40, _("Clicked")
    DEFERRED = 50, _("Deferred")
    SOFT_BOUNCED = 60, _("Soft Bounced")
    UNDETERMINED_BOUNCED = 65, _("Undetermined Bounced")
    HARD_BOUNCED = 70, _("Hard Bounced")
    SPAM_COMPLAINT = 80, _("Spam Complaint")
    UNSUBSCRIBED = 90, _("Unsubscribed")


#: States a worker may claim from.
CLAIMABLE = (STATUS.queued, STATUS.requeued)
