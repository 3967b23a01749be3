"""The admin: find and understand mail, act on it safely, edit templates, watch delivery.

Importing this package registers every ModelAdmin with ``django.contrib.admin.site``
(``admin.autodiscover()`` does it); each wing lives in its own module.
django-post_office's names for its admin pieces import from here too, so admins
built from them keep working (see docs/migrating.rst).
"""

from .attachments import AttachmentAdmin
from .classic import (
    AttachmentInline,
    CommaSeparatedEmailWidget,
    LogInline,
    SubjectField,
    get_message_preview,
)
from .compose import EmailForm
from .delivery import DeliverySwitchAdmin, LogAdmin, WorkerHeartbeatAdmin
from .do_not_send import DoNotSendEntryAdmin
from .email_templates import EmailTemplateAdmin, TranslationInline
from .emails import EmailAdmin, requeue
from .forms import EmailTemplateForm, TranslationForm, TranslationFormSet
from .health import DeliveryHealthAdmin

#: django-post_office's names: its template form, the translations' inline and their formset.
EmailTemplateAdminForm = EmailTemplateForm
EmailTemplateInline = TranslationInline
EmailTemplateAdminFormSet = TranslationFormSet

__all__ = [
    "AttachmentAdmin",
    "AttachmentInline",
    "CommaSeparatedEmailWidget",
    "DeliveryHealthAdmin",
    "DeliverySwitchAdmin",
    "DoNotSendEntryAdmin",
    "EmailAdmin",
    "EmailForm",
    "EmailTemplateAdmin",
    "EmailTemplateAdminForm",
    "EmailTemplateAdminFormSet",
    "EmailTemplateForm",
    "EmailTemplateInline",
    "LogAdmin",
    "LogInline",
    "SubjectField",
    "TranslationForm",
    "TranslationFormSet",
    "TranslationInline",
    "WorkerHeartbeatAdmin",
    "get_message_preview",
    "requeue",
]
