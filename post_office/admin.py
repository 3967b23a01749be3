"""Admin: edit templates (with their translations) and watch delivery."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Case, F, Model, QuerySet, Value, When
from django.http import FileResponse, Http404, HttpRequest
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .choices import CLAIMABLE
from .exceptions import InvalidArgument
from .languages import normalize_language
from .models import STATUS, Attachment, DeliverySwitch, Email, EmailTemplate, Log, WorkerHeartbeat
from .transport.connections import delivery_aliases
from .validation import (
    check_json_context,
    check_no_line_breaks,
    parse_address,
    parse_addresses,
    parse_datetime,
    parse_headers,
)


class AddressListField(forms.CharField):
    """A list of addresses edited one per line (never split on commas: a display name may hold one)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        return [line.strip() for line in str(text).splitlines() if line.strip()]


class EmailForm(forms.ModelForm):
    """The Email add/change form: every value is checked by the rules ``mail.send`` applies."""

    to = AddressListField(label=_("to"), required=False, help_text=_("One address per line."))
    cc = AddressListField(label=_("cc"), required=False, help_text=_("One address per line."))
    bcc = AddressListField(label=_("bcc"), required=False, help_text=_("One address per line."))

    class Meta:
        model = Email
        fields = [
            "from_email",
            "to",
            "cc",
            "bcc",
            "subject",
            "message",
            "html_message",
            "alternatives",
            "status",
            "priority",
            "scheduled_time",
            "expires_at",
            "number_of_retries",
            "headers",
            "context",
            "template",
            "language",
            "backend_alias",
        ]

    def clean_from_email(self) -> str:
        return parse_address(self.cleaned_data["from_email"], "from_email")

    def clean_to(self) -> list[str]:
        return parse_addresses(self.cleaned_data["to"], "to")

    def clean_cc(self) -> list[str]:
        return parse_addresses(self.cleaned_data["cc"], "cc")

    def clean_bcc(self) -> list[str]:
        return parse_addresses(self.cleaned_data["bcc"], "bcc")

    def clean_subject(self) -> str:
        return check_no_line_breaks("subject", self.cleaned_data["subject"])

    def clean_scheduled_time(self) -> datetime.datetime | None:
        return parse_datetime(self.cleaned_data["scheduled_time"], "scheduled_time")

    def clean_expires_at(self) -> datetime.datetime | None:
        return parse_datetime(self.cleaned_data["expires_at"], "expires_at")

    def clean_headers(self) -> dict[str, str] | None:
        return parse_headers(self.cleaned_data["headers"])

    def clean_context(self) -> dict[str, object] | None:
        context = self.cleaned_data["context"]
        return None if context is None else check_json_context(context)

    def clean_alternatives(self) -> list[list[str]]:
        alternatives = self.cleaned_data["alternatives"] or []
        if not isinstance(alternatives, list) or not all(
            isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)
            for item in alternatives
        ):
            raise InvalidArgument("alternatives", alternatives, "must be a list of [content, mimetype] pairs")
        for _content, mimetype in alternatives:
            check_no_line_breaks("alternatives mimetype", mimetype)
        return alternatives

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        if not any(cleaned.get(name) for name in ("to", "cc", "bcc")) and not self.errors:
            self.add_error("to", _("An email needs at least one recipient."))
        return cleaned


class LogInline(admin.TabularInline):
    model = Log
    extra = 0
    can_delete = False
    readonly_fields = ("date", "status", "exception_type", "message")

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class BackendAliasFilter(admin.SimpleListFilter):
    """The configured delivery aliases (no query over the emails); the blank one is "default"."""

    title = _("backend alias")
    parameter_name = "backend_alias"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        aliases = sorted(delivery_aliases() - {"default"})
        return [("default", _("default")), *((alias, alias) for alias in aliases)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "default":
            return queryset.filter(backend_alias__in=("", "default"))
        return queryset.filter(backend_alias=value)


class LanguageFilter(admin.SimpleListFilter):
    """The project's LANGUAGES (no query over the emails); the blank one is "default"."""

    title = _("language")
    parameter_name = "language"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        return [("-", _("default")), *((code, f"{code} ({name})") for code, name in settings.LANGUAGES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(language="" if value == "-" else value)


@admin.register(Email)
class EmailAdmin(admin.ModelAdmin):
    form = EmailForm
    list_display = (
        "id",
        "recipients",
        "subject",
        "status",
        "priority",
        "template",
        "backend",
        "scheduled_time",
        "last_updated",
    )
    list_select_related = ("template",)
    list_filter = (
        "status",
        "priority",
        ("template", admin.RelatedOnlyFieldListFilter),
        BackendAliasFilter,
        LanguageFilter,
        ("created", admin.DateFieldListFilter),
        ("scheduled_time", admin.DateFieldListFilter),
    )
    # Recipients are JSON lists: searched as text, so any part of an address matches.
    search_fields = ("to", "cc", "bcc", "subject", "from_email", "message_id")
    # No count of the whole table on each page (millions of rows).
    show_full_result_count = False
    date_hierarchy = "created"
    inlines = [LogInline]
    actions = ["requeue", "cancel", "restore"]
    # template_language: the translation actually used (a fallback when it differs from language).
    readonly_fields = (
        "created",
        "last_updated",
        "claimed_by",
        "lease_expires_at",
        "message_id",
        "template_language",
        "template_file",
        "attachment_links",
    )

    @admin.display(description=_("to"))
    def recipients(self, obj: Email) -> str:
        """The first recipient, and how many more (in to, cc and bcc)."""
        everyone = [*obj.to, *obj.cc, *obj.bcc]
        if not everyone:
            return ""
        more = len(everyone) - 1
        return f"{everyone[0]} +{more}" if more else str(everyone[0])

    @admin.display(description=_("backend"), ordering="backend_alias")
    def backend(self, obj: Email) -> str:
        return obj.backend_alias or str(_("default"))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if request.method == "GET" and DeliverySwitch.is_paused():
            self.message_user(
                request,
                _("Delivery is paused: emails are queued but not sent until it is resumed."),
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("attachments"))
    def attachment_links(self, obj: Email) -> str:
        if obj.pk is None:
            return ""
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            "{}",
            ((download_link(self.admin_site, attachment),) for attachment in obj.attachments.order_by("pk")),
        )

    # A view-only staff user sees the changelist but may not run actions that change mail.
    # The name stays "requeue" (django-post_office's), so links and scripts written for it work.
    @admin.action(description=_("Retry selected failed emails"), permissions=["change"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Email]) -> None:
        """Queue failed emails again with their attempts reset; skip, and say why, what cannot be retried.

        An admin action is a POST, never a plain GET. A future schedule is kept (never
        moved earlier); expired mail stays failed until its expiry is cleared; mail that
        is queued, being sent or sent is not touched (a sent email is resent, not retried).
        """
        now = timezone.now()
        failed = queryset.filter(status=STATUS.failed)
        expired = failed.filter(expires_at__lte=now).count()
        others = queryset.exclude(status=STATUS.failed).count()
        count = failed.exclude(expires_at__lte=now).update(
            status=STATUS.queued,
            number_of_retries=0,
            claimed_by="",
            lease_expires_at=None,
            last_updated=now,
            scheduled_time=Case(When(scheduled_time__gt=now, then=F("scheduled_time")), default=Value(None)),
        )
        self.message_user(
            request,
            ngettext("%(count)d failed email will be retried.", "%(count)d failed emails will be retried.", count)
            % {"count": count},
            messages.SUCCESS if count else messages.INFO,
        )
        if expired:
            self.message_user(
                request,
                ngettext(
                    "%(count)d email was skipped: it has expired (clear its expiry to retry it).",
                    "%(count)d emails were skipped: they have expired (clear their expiry to retry them).",
                    expired,
                )
                % {"count": expired},
                messages.WARNING,
            )
        if others:
            self.message_user(
                request,
                ngettext(
                    "%(count)d email was skipped: only failed emails are retried (it is queued, being sent or sent).",
                    "%(count)d emails were skipped: only failed emails are retried (they are queued, being sent "
                    "or sent).",
                    others,
                )
                % {"count": others},
                messages.WARNING,
            )

    @admin.action(description=_("Cancel selected queued emails"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Email]) -> None:
        """Queued and requeued mail becomes cancelled: no worker claims it. "Restore" undoes it."""
        count = queryset.filter(status__in=CLAIMABLE).update(status=STATUS.cancelled, last_updated=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d email cancelled.", "%(count)d emails cancelled.", count) % {"count": count},
        )
        self._say_skipped(request, queryset.count() - count, _("only queued emails can be cancelled"))

    @admin.action(description=_("Restore selected cancelled emails"), permissions=["change"])
    def restore(self, request: HttpRequest, queryset: QuerySet[Email]) -> None:
        """Cancelled mail goes back to the queue, with its schedule and expiry as they were."""
        count = queryset.filter(status=STATUS.cancelled).update(status=STATUS.queued, last_updated=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d email restored to the queue.", "%(count)d emails restored to the queue.", count)
            % {"count": count},
        )
        self._say_skipped(request, queryset.count() - count, _("only cancelled emails can be restored"))

    def _say_skipped(self, request: HttpRequest, skipped: int, why: object) -> None:
        if skipped:
            text = ngettext("%(count)d email was skipped: %(why)s.", "%(count)d emails were skipped: %(why)s.", skipped)
            self.message_user(request, text % {"count": skipped, "why": why}, messages.WARNING)


class TranslationForm(forms.ModelForm):
    language = forms.ChoiceField(choices=lambda: list(settings.LANGUAGES))

    class Meta:
        model = EmailTemplate
        fields = ("language", "subject", "content", "html_content")

    def _get_validation_exclusions(self) -> set[str]:
        # On the add page the template is not saved yet, so a new translation's link to it
        # is empty while the form is checked: constraints on that link (a translation has a
        # language, a base template none) are checked when both are saved, not here.
        return {*super()._get_validation_exclusions(), "default_template"}  # type: ignore[misc]


class TranslationFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        """One translation per language (the database refuses a second one, which would be a 500)."""
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not form.has_changed() and form.instance.pk is None:
                continue
            if form.cleaned_data.get("DELETE"):
                continue
            language = normalize_language(form.cleaned_data.get("language") or "")
            if language in seen:
                raise forms.ValidationError(_("There are two translations into %(language)s.") % {"language": language})
            seen.add(language)


class TranslationInline(admin.StackedInline):
    model = EmailTemplate
    form = TranslationForm
    formset = TranslationFormSet
    fk_name = "default_template"
    extra = 0
    verbose_name = _("translation")
    verbose_name_plural = _("translations")


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "subject", "languages", "last_updated")
    search_fields = ("name", "description", "subject")
    fields = ("name", "description", "subject", "content", "html_content")
    inlines = [TranslationInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailTemplate]:
        return (
            super().get_queryset(request).filter(default_template__isnull=True).prefetch_related("translated_templates")
        )

    @admin.display(description=_("languages"))
    def languages(self, obj: EmailTemplate) -> str:
        return ", ".join(t.language for t in obj.translated_templates.all())

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: forms.BaseModelFormSet, change: bool
    ) -> None:
        for inline_form in formset.forms:
            if inline_form.has_changed() and inline_form.instance is not None:
                inline_form.instance.name = form.instance.name
        super().save_formset(request, form, formset, change)


@admin.register(Log)
class LogAdmin(admin.ModelAdmin):
    list_display = ("date", "email", "status", "exception_type", "message")
    list_filter = ("status", "exception_type")
    raw_id_fields = ("email",)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Attachments are served only through :meth:`download`, never by the storage's URL.

    Files are added by queueing mail (content-addressed, under random names),
    not uploaded here.
    """

    list_display = ("name", "mimetype", "download", "created", "last_used")
    search_fields = ("name",)
    raw_id_fields = ("emails",)
    fields = ("name", "mimetype", "headers", "emails", "download", "content_hash", "created", "last_used")
    readonly_fields = ("download", "content_hash", "created", "last_used")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="{}_{}_download".format(*info),
        )
        return [download, *super().get_urls()]

    @admin.display(description=_("file"))
    def download(self, obj: Attachment) -> str:
        return download_link(self.admin_site, obj) if obj.pk is not None else ""

    def download_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        """The file, as a download, to staff who may view attachments or emails (403 for other staff)."""
        if not (self.has_view_permission(request) or _may_view(request, Email)):
            raise PermissionDenied
        attachment = self.get_object(request, unquote(object_id))
        if attachment is None or not attachment.file.name:
            raise Http404(_("No such attachment."))
        try:
            handle = attachment.file.storage.open(attachment.file.name, "rb")
        except FileNotFoundError:
            raise Http404(_("The attachment's file is missing from the storage.")) from None
        # Never rendered by the browser, whatever the stored type says: a download, not sniffed.
        response = FileResponse(
            handle, as_attachment=True, filename=attachment.name, content_type="application/octet-stream"
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox"
        response["Cache-Control"] = "private, no-store"
        return response


def download_link(site: admin.AdminSite, attachment: Attachment) -> str:
    """A link to an attachment's download view (just its name when the site has no Attachment admin)."""
    try:
        url = reverse(f"{site.name}:post_office_attachment_download", args=[quote(attachment.pk)])
    except NoReverseMatch:
        return format_html("{}", attachment.name)
    return format_html('<a href="{}">{}</a>', url, attachment.name)


def _may_view(request: HttpRequest, model: type[Model]) -> bool:
    """The view (or change) permission on ``model``, as ModelAdmin.has_view_permission reads it."""
    opts = model._meta
    return any(
        request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """Read-only: rows are written by ``runmailer``; stale ones may be deleted."""

    list_display = ("name", "hostname", "pid", "state", "last_seen", "started", "sent", "failed", "requeued")
    list_filter = ("state", "hostname")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(DeliverySwitch)
class DeliverySwitchAdmin(admin.ModelAdmin):
    """Pause delivery from the admin (the same switch as ``manage.py mail_delivery pause``)."""

    list_display = ("name", "paused", "reason", "changed")
    fields = ("paused", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # One switch: once it exists, it is edited, not added again.
        return super().has_add_permission(request) and not DeliverySwitch.objects.filter(name="delivery").exists()
