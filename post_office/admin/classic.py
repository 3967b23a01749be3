"""django-post_office's admin pieces, for projects that subclass or reuse them.

This app's admin does not need them (an email's page shows its attachments and
attempts itself); they are kept so that ``from post_office.admin import
AttachmentInline, LogInline, ...`` and admins built from them keep working.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from ..addresses import join_address_list
from ..models import Attachment, Email, EmailTemplate, Log

__all__ = [
    "AttachmentInline",
    "ClassicEmailColumns",
    "ClassicTemplateColumns",
    "CommaSeparatedEmailWidget",
    "LogInline",
    "SubjectField",
    "get_message_preview",
]


@admin.display(description=_("message"))
def get_message_preview(instance: Log) -> str:
    """The first 25 characters of a log's message, with '...' when there is more."""
    return f"{instance.message[:25]}..." if len(instance.message) > 25 else instance.message


class AttachmentInline(admin.StackedInline):
    """An email's attachments (not its inline images), linked by the email-attachment table."""

    model = Attachment.emails.through
    extra = 0
    autocomplete_fields = ["attachment"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).select_related("attachment")
        # Inline images have generated names and are shown in the HTML anyway.
        return queryset.exclude(**{"attachment__headers__Content-Disposition__startswith": "inline"})


class LogInline(admin.TabularInline):
    """An email's delivery attempts, read-only."""

    model = Log
    fields = readonly_fields = ("date", "status", "exception_type", "message")
    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CommaSeparatedEmailWidget(forms.TextInput):
    """A text input showing a list of addresses as one line (a display name with a comma stays quoted)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attrs.update({"class": "vTextField"})

    def format_value(self, value: Any) -> Any:
        if not value:
            return ""
        if isinstance(value, str):
            return value
        return join_address_list(str(item) for item in value)


class SubjectField(forms.TextInput):
    """A wide text input for a template's subject."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attrs.update({"style": "width: 610px;"})


class ClassicEmailColumns:
    """django-post_office's EmailAdmin columns and views, by their names there."""

    @admin.display(description=_("to"), ordering="to")
    def to_display(self, instance: Email) -> str:
        return ", ".join(instance.to)

    @admin.display(description="Message-ID")
    def truncated_message_id(self, instance: Email) -> str:
        if instance.message_id:
            return Truncator(instance.message_id.strip("<>")).chars(10)
        return str(instance.pk)

    @admin.display(description=_("subject"), ordering="subject")
    def shortened_subject(self, instance: Email) -> str:
        return Truncator(instance.subject).chars(100)

    @admin.display(description=_("template"), boolean=True)
    def use_template(self, instance: Email) -> bool:
        return bool(instance.template_id)

    @admin.display(description=_("subject"))
    def render_subject(self, instance: Email) -> str:
        return str(instance.email_message().subject)

    @admin.display(description=_("message"))
    def render_plaintext_body(self, instance: Email) -> str:
        message: Any = instance.email_message()
        return format_html("<pre>{}</pre>", message.body) if message.content_subtype == "plain" else ""

    @admin.display(description=_("HTML message"))
    def render_html_body(self, instance: Email) -> str:
        """The HTML in a sandboxed frame (scripts and forms blocked), served by the preview view."""
        url = reverse(f"{self.admin_site.name}:post_office_email_preview", args=[instance.pk])  # type: ignore[attr-defined]
        return format_html(
            '<iframe sandbox src="{}" title="{}" style="width: 100%; height: 40em"></iframe>', url, _("HTML message")
        )

    def preview_html(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.html_view(request, pk)  # type: ignore[attr-defined]

    def fetch_email_image(self, request: HttpRequest, pk: int, content_id: str) -> HttpResponse:
        return self.image_view(request, pk, content_id)  # type: ignore[attr-defined]

    def resend(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.resend_view(request, pk)  # type: ignore[attr-defined]


class ClassicTemplateColumns:
    """django-post_office's EmailTemplateAdmin columns, by their names there."""

    @admin.display(description=_("description"), ordering="description")
    def description_shortened(self, instance: EmailTemplate) -> str:
        return Truncator(instance.description.split("\n")[0]).chars(200)

    @admin.display(description=_("languages"))
    def languages_compact(self, instance: EmailTemplate) -> str:
        return ", ".join(sorted(t.language for t in instance.translated_templates.all()))
