"""List filters whose choices come from the settings, never from a query over the emails."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..transport.connections import delivery_aliases


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
