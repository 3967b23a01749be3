"""The admin: find and understand mail, act on it safely, edit templates, watch delivery.

Importing this package registers every ModelAdmin with ``django.contrib.admin.site``
(``admin.autodiscover()`` does it); each wing lives in its own module.
"""

from .attachments import AttachmentAdmin
from .compose import EmailForm
from .delivery import DeliverySwitchAdmin, LogAdmin, WorkerHeartbeatAdmin
from .email_templates import EmailTemplateAdmin
from .emails import EmailAdmin
from .health import DeliveryHealthAdmin

__all__ = [
    "AttachmentAdmin",
    "DeliveryHealthAdmin",
    "DeliverySwitchAdmin",
    "EmailAdmin",
    "EmailForm",
    "EmailTemplateAdmin",
    "LogAdmin",
    "WorkerHeartbeatAdmin",
]
