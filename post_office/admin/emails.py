"""The email list and form: find mail, see what happened to it, retry, cancel and restore it."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Case, F, QuerySet, Value, When
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..choices import CLAIMABLE
from ..enqueue.store import persist, store_edit
from ..models import STATUS, DeliverySwitch, Email
from ..notify import notify_queued
from .attachments import download_link
from .classic import ClassicEmailColumns
from .compose import EmailForm
from .email_detail import EmailDetailMixin
from .filters import BackendAliasFilter, LanguageFilter, TemplateFilter
from .paging import EstimatedCountPaginator
from .resend import ResendMixin


@admin.register(Email)
class EmailAdmin(EmailDetailMixin, ResendMixin, ClassicEmailColumns, admin.ModelAdmin):
    form = EmailForm

    class Media:
        css = {"all": ["post_office/admin/email_list.css"]}

    # Short columns that fit a 1,280-px screen beside the navigation and the filters.
    list_display = (
        "recipients",
        "subject",
        "status_badge",
        "priority",
        "template",
        "backend",
        "scheduled",
        "updated",
    )
    list_select_related = ("template",)
    list_filter = (
        "status",
        "priority",
        # Not RelatedOnlyFieldListFilter: that one reads every email to find the templates used.
        TemplateFilter,
        BackendAliasFilter,
        LanguageFilter,
        ("created", admin.DateFieldListFilter),
        ("scheduled_time", admin.DateFieldListFilter),
    )
    # Recipients are JSON lists: searched as text, so any part of an address matches.
    search_fields = ("to", "cc", "bcc", "subject", "from_email", "message_id")
    # No count of the whole table on each page (millions of rows): the paginator counts at
    # most 10,000 rows and estimates beyond (benchmarks/admin_list.py, benchmarks/RESULTS.md).
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # No date_hierarchy: it reads every matching row (MIN, MAX and DISTINCT dates) on each
    # page, 0.3 s of 0.4 s at a million rows; the created and scheduled date filters stay.
    # The attempts are the detail page's timeline (email_detail), not an inline.
    inlines = ()
    actions = ["requeue", "cancel", "restore", "resend_emails"]
    fieldsets = (
        (None, {"fields": ("from_email", "to", "cc", "bcc")}),
        (
            _("Content"),
            {"fields": ("template", "language", "context", "render_on_delivery", "subject", "message", "html_message")},
        ),
        (_("Delivery"), {"fields": ("priority", "scheduled_time", "expires_at", "backend_alias", "headers")}),
    )
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

    def save_model(self, request: HttpRequest, obj: Email, form: Any, change: bool) -> None:
        """Store what the form prepared as ``mail.send`` would: a new email is queued, a queued one replaced."""
        prepared = getattr(form, "prepared", None)
        if prepared is None:
            super().save_model(request, obj, form, change)
        elif not change:
            persist([prepared])
        elif not store_edit(obj, prepared):
            self.message_user(
                request,
                _("This email was claimed for delivery or sent meanwhile; your changes were not saved."),
                messages.ERROR,
            )

    @admin.display(description=_("render on delivery"), boolean=True)
    def render_on_delivery(self, obj: Email) -> bool:
        return obj.context is not None and bool(obj.template_id or obj.template_file)

    @admin.display(description=_("to"))
    def recipients(self, obj: Email) -> str:
        """The first recipient, and how many more (in to, cc and bcc)."""
        everyone = [*obj.to, *obj.cc, *obj.bcc]
        if not everyone:
            return ""
        more = len(everyone) - 1
        return f"{everyone[0]} +{more}" if more else str(everyone[0])

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Email) -> str:
        return format_html(
            '<span class="po-status po-status-{}">{}</span>', STATUS(obj.status).name, obj.get_status_display()
        )

    @admin.display(description=_("scheduled"), ordering="scheduled_time")
    def scheduled(self, obj: Email) -> str:
        return short_time(obj.scheduled_time)

    @admin.display(description=_("updated"), ordering="last_updated")
    def updated(self, obj: Email) -> str:
        return short_time(obj.last_updated)

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
    def requeue(self, request: HttpRequest, queryset: QuerySet[Email]) -> TemplateResponse | None:
        """Queue failed emails again with their attempts reset, after a confirmation page; say what is skipped.

        A POST only (admin actions are), confirmed by a second POST. A future schedule
        is kept (never moved earlier); expired mail stays failed until its expiry is
        cleared; mail that is queued, being sent or sent is not touched (a sent email is
        resent, not retried).
        """
        now = timezone.now()
        failed = queryset.filter(status=STATUS.failed)
        retriable = failed.exclude(expires_at__lte=now)
        expired = failed.filter(expires_at__lte=now).count()
        others = queryset.exclude(status=STATUS.failed).count()
        if request.POST.get("post") != "yes":
            return self._confirm_retry(request, retriable, expired, others)
        count = retriable.update(
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
        if count:
            notify_queued()
        return None

    def _confirm_retry(
        self, request: HttpRequest, retriable: QuerySet[Email], expired: int, others: int
    ) -> TemplateResponse:
        count = retriable.count()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Retry failed emails"),
            "opts": self.opts,
            "emails": list(retriable.order_by("pk")[:100]),
            "count": count,
            "more": max(count - 100, 0),
            "expired": expired,
            "others": others,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse(f"{self.admin_site.name}:post_office_email_changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/post_office/email/retry_confirmation.html", context)

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


@admin.action(description=_("Retry selected failed emails"), permissions=["change"])
def requeue(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Email]) -> TemplateResponse | None:
    """django-post_office's action as a function, for other admins of Email: EmailAdmin's "requeue"."""
    if not isinstance(modeladmin, EmailAdmin):
        modeladmin = EmailAdmin(modeladmin.model, modeladmin.admin_site)
    return modeladmin.requeue(request, queryset)


def short_time(value: datetime.datetime | None) -> str:
    """A time in the current time zone, short: '14:05' today, '7 Dec 14:05' this year, else with the year."""
    if value is None:
        return "-"
    local, now = timezone.localtime(value), timezone.localtime()
    if local.date() == now.date():
        return dateformat.format(local, "H:i")
    return dateformat.format(local, "j M H:i" if local.year == now.year else "j M Y H:i")
