"""The "Delivery health" page: is mail moving, who delivers it, what fails, and the pause switch.

Who sees what:

- the page: staff with the view (or change) permission on emails;
- the Pause and Resume buttons: those who may also change the delivery switch
  (``post_office.change_deliveryswitch``); anyone else gets a 403 on the POST.

The page hangs on ``DeliveryHealth``, a proxy model with no permissions of its
own, so it shows on the index of any AdminSite that registers this ModelAdmin.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from .. import health
from ..conf import settings as po_settings
from ..models import DeliveryHealth, DeliverySwitch, Email
from ..notify import notify_queued

#: Worker states as heartbeats write them, for people.
STATES = {
    "running": gettext_lazy("running"),
    "idle": gettext_lazy("idle"),
    "paused": gettext_lazy("paused"),
    "stopping": gettext_lazy("stopping"),
    "stopped": gettext_lazy("stopped"),
    "crashed": gettext_lazy("crashed"),
    "finished": gettext_lazy("finished"),
    "failed": gettext_lazy("failed"),
}
KINDS = {
    "runmailer": gettext_lazy("runmailer (long-running)"),
    "send_queued_mail": gettext_lazy("send_queued_mail (one pass, e.g. cron)"),
    "celery": gettext_lazy("Celery task (one pass)"),
    "django_tasks": gettext_lazy("Django Tasks task (one pass)"),
}

# The chart's geometry, in SVG user units (the SVG scales to the page's width).
CHART_LEFT, CHART_TOP, CHART_BOTTOM, SLOT, BAR = 48, 28, 34, 30, 11
PLOT_HEIGHT = 160


class PauseForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=DeliverySwitch._meta.get_field("reason").max_length,
        required=False,
        help_text=gettext_lazy("Shown here and by 'mail_delivery status'."),
    )


@admin.register(DeliveryHealth)
class DeliveryHealthAdmin(admin.ModelAdmin):
    """One page, no rows to add, change or delete."""

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        opts = Email._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def can_switch(self, request: HttpRequest) -> bool:
        """May pause and resume delivery: the change permission on the delivery switch."""
        opts = DeliverySwitch._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name="{}_{}_changelist".format(*info)),
            path("pause/", view(require_POST(self.pause_view)), name="{}_{}_pause".format(*info)),
            path("resume/", view(require_POST(self.resume_view)), name="{}_{}_resume".format(*info)),
        ]

    def _url(self, name: str) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}")

    # -- the page ------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        report = health.report()
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Delivery health"),
            "opts": self.opts,
            "report": report,
            "alerts": alerts(report),
            "counts": self._count_rows(report),
            "chart": chart(report),
            "workers": [
                (worker, STATES.get(worker.state, worker.state), KINDS[worker.kind]) for worker in report.workers
            ],
            "can_switch": self.can_switch(request),
            "pause_form": PauseForm(),
            "pause_url": self._url("pause"),
            "resume_url": self._url("resume"),
            "email_list_url": self._email_list_url(),
            "count_cap": health.COUNT_CAP,
            "workers_shown": health.WORKERS_SHOWN,
            "hours": health.CHART_HOURS,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/post_office/health.html", context)

    def _email_list_url(self) -> str | None:
        try:
            return reverse(f"{self.admin_site.name}:post_office_email_changelist")
        except NoReverseMatch:  # a custom AdminSite without the email list
            return None

    def _count_rows(self, report: health.HealthReport) -> list[dict[str, Any]]:
        base = self._email_list_url()
        rows = []
        for row in report.statuses:
            cells = [
                (count, f"{base}?status__exact={row.status}&priority__exact={priority}" if base else None)
                for count, (priority, _label) in zip(row.counts, report.priorities, strict=True)
            ]
            total_url = f"{base}?status__exact={row.status}" if base else None
            rows.append({"status": row.status, "label": row.label, "cells": cells, "total": (row.total, total_url)})
        return rows

    # -- the switch ----------------------------------------------------------

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        if not self.can_switch(request):
            raise PermissionDenied
        form = PauseForm(request.POST)
        if not form.is_valid():
            messages.error(request, gettext("Delivery was not paused: the reason is too long."))
            return HttpResponseRedirect(self._url("changelist"))
        DeliverySwitch.set_paused(True, form.cleaned_data["reason"])
        self._log(request, gettext("Paused delivery from the health page."))
        messages.success(request, gettext("Delivery paused: queued mail waits until it is resumed."))
        return HttpResponseRedirect(self._url("changelist"))

    def resume_view(self, request: HttpRequest) -> HttpResponse:
        if not self.can_switch(request):
            raise PermissionDenied
        DeliverySwitch.set_paused(False)
        notify_queued()  # wakes PostgreSQL workers now instead of after EMPTY_QUEUE_SLEEP
        self._log(request, gettext("Resumed delivery from the health page."))
        if po_settings.PAUSED:
            messages.warning(
                request,
                gettext("The POST_OFFICE['PAUSED'] setting is on: delivery stays paused until that setting changes."),
            )
        else:
            messages.success(request, gettext("Delivery resumed."))
        return HttpResponseRedirect(self._url("changelist"))

    def _log(self, request: HttpRequest, message: str) -> None:
        """Record who switched delivery, in the switch's admin history."""
        switch = DeliverySwitch.objects.filter(name="delivery").first()
        if switch is not None:
            self.log_change(request, switch, message)


def alerts(report: health.HealthReport) -> list[str]:
    """What is wrong, by the HEALTH_MAX_AGE and HEALTH_MAX_SILENCE thresholds (translated)."""
    max_age = datetime.timedelta(minutes=po_settings.HEALTH_MAX_AGE)
    max_silence = datetime.timedelta(minutes=po_settings.HEALTH_MAX_SILENCE)
    found = report.stuck(max_age, max_silence)
    messages_ = []
    if "age" in found:
        messages_.append(
            gettext("The oldest due email has waited %(age)s, more than %(limit)s.")
            % {
                "age": timesince(report.oldest_due or report.now, report.now),
                "limit": _minutes(po_settings.HEALTH_MAX_AGE),
            }
        )
    if "silence" in found:
        seen = report.last_worker_seen
        if seen is None:
            messages_.append(gettext("Mail is due, and no worker has ever written a heartbeat."))
        else:
            messages_.append(
                gettext("Mail is due, and no worker has run for %(silence)s (more than %(limit)s).")
                % {"silence": timesince(seen, report.now), "limit": _minutes(po_settings.HEALTH_MAX_SILENCE)}
            )
    return messages_


def _minutes(value: float) -> str:
    count = int(value) if float(value).is_integer() else value
    return ngettext("%(count)s minute", "%(count)s minutes", int(value)) % {"count": count}


def chart(report: health.HealthReport) -> dict[str, Any]:
    """Sent and failed attempts per hour as SVG shapes: two bars per hour, labelled every third hour."""
    top = max((max(bar.sent, bar.failed) for bar in report.hours), default=0) or 1
    bars, labels = [], []
    for index, bar in enumerate(report.hours):
        x = CHART_LEFT + index * SLOT
        start = timezone.localtime(bar.start)
        span = f"{start:%H:%M}–{timezone.localtime(bar.start + datetime.timedelta(hours=1)):%H:%M}"
        if bar.end > report.now:
            span = gettext("%(hours)s (so far)") % {"hours": span}
        for kind, value, offset in (("sent", bar.sent, 3), ("failed", bar.failed, 4 + BAR)):
            height = round(value / top * PLOT_HEIGHT, 1) if value else 0
            if kind == "sent":
                text = ngettext("%(span)s: %(count)s email sent", "%(span)s: %(count)s emails sent", value)
            else:
                text = ngettext("%(span)s: %(count)s failed attempt", "%(span)s: %(count)s failed attempts", value)
            bars.append(
                {
                    "id": f"health-bar-{kind}-{index}",
                    "kind": kind,
                    "x": x + offset,
                    "y": CHART_TOP + PLOT_HEIGHT - height,
                    "height": height,
                    "value": value,
                    "title": text % {"span": span, "count": value},
                }
            )
        if index % 3 == 0:
            labels.append({"x": x + SLOT / 2, "text": f"{start:%H:%M}"})
    return {
        "width": CHART_LEFT + SLOT * len(report.hours) + 8,
        "height": CHART_TOP + PLOT_HEIGHT + CHART_BOTTOM,
        "left": CHART_LEFT,
        "top": CHART_TOP,
        "bottom": CHART_TOP + PLOT_HEIGHT,
        "right": CHART_LEFT + SLOT * len(report.hours),
        "bar_width": BAR,
        "max": top,
        "label_y": CHART_TOP + PLOT_HEIGHT + 18,
        "bars": bars,
        "labels": labels,
        "total_sent": sum(bar.sent for bar in report.hours),
        "total_failed": sum(bar.failed for bar in report.hours),
    }
