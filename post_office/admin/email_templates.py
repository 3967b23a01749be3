"""Templates: a base template and its translations on one page."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import EmailTemplate
from .forms import TranslationForm, TranslationFormSet


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
