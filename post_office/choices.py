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


#: States a worker may claim from.
CLAIMABLE = (STATUS.queued, STATUS.requeued)
