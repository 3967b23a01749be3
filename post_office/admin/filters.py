"""List filters whose choices come from the settings, never from a query over the emails."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import EmailTemplate
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


class TemplateFilter(admin.SimpleListFilter):
    """The base templates (one small query over the templates, none over the emails).

    A base template's choice also finds the mail sent with its translations. The
    parameter is the one Django's related-field filter used, so old links keep working.
    """

    title = _("template")
    parameter_name = "template__id__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        bases = EmailTemplate.objects.filter(language="").order_by("name").values_list("pk", "name")
        return [(str(pk), name) for pk, name in bases]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        # The base and its translations, by id: the email table is filtered through its own index.
        family = EmailTemplate.objects.filter(Q(pk=value) | Q(default_template=value)).values_list("pk", flat=True)
        return queryset.filter(template__in=list(family))


class ExceptionTypeFilter(admin.SimpleListFilter):
    """The error types of the latest attempts (a bounded query, not a DISTINCT over every log)."""

    title = _("exception type")
    parameter_name = "exception_type"
    #: How many of the latest attempts the choices are taken from.
    recent = 10_000

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        logs = model_admin.model.objects
        # The id of the recent-th latest attempt (an offset on the primary key), then a range up from it.
        oldest = logs.order_by("-pk").values_list("pk", flat=True)[self.recent - 1 : self.recent].first()
        latest = logs.filter(pk__gte=oldest) if oldest is not None else logs.all()
        types = (
            latest.exclude(exception_type="")
            .order_by("exception_type")
            .values_list("exception_type", flat=True)
            .distinct()
        )
        return [(name, name) for name in types]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(exception_type=value)
