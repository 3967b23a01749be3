"""Delivery: its log, its workers and the pause switch."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from ..models import DeliverySwitch, Log, WorkerHeartbeat
from .filters import ExceptionTypeFilter
from .paging import EstimatedCountPaginator


@admin.register(Log)
class LogAdmin(admin.ModelAdmin):
    list_display = ("date", "email", "status", "exception_type", "message")
    list_filter = ("status", ExceptionTypeFilter)
    raw_id_fields = ("email",)
    # Millions of attempts: no count of them all on each page.
    show_full_result_count = False
    paginator = EstimatedCountPaginator


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
