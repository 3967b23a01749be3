"""Templates: a base template and its translations on one page, with preview, test send and history.

The pages around the change form live in their own modules: ``template_preview``
(the live preview), ``template_test_send`` ("Send a test") and
``template_versions`` (history, diff, restore).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _

from ..models import EmailTemplate
from .classic import ClassicTemplateColumns
from .forms import EmailTemplateForm, TranslationForm, TranslationFormSet
from .template_preview import PREVIEW_MEDIA, TemplatePreviewMixin
from .template_test_send import TemplateTestSendMixin
from .template_versions import TemplateVersionsMixin


class TranslationInline(admin.StackedInline):
    model = EmailTemplate
    form = TranslationForm
    formset = TranslationFormSet
    fk_name = "default_template"
    extra = 0
    verbose_name = _("translation")
    verbose_name_plural = _("translations")


@admin.register(EmailTemplate)
class EmailTemplateAdmin(
    TemplatePreviewMixin, TemplateTestSendMixin, TemplateVersionsMixin, ClassicTemplateColumns, admin.ModelAdmin
):
    form = EmailTemplateForm
    list_display = ("name", "description", "subject", "languages", "last_updated")
    search_fields = ("name", "description", "subject")
    fields = ("name", "description", "subject", "content", "html_content")
    inlines = [TranslationInline]

    @property
    def media(self) -> forms.Media:
        return super().media + PREVIEW_MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailTemplate]:
        return (
            super().get_queryset(request).filter(default_template__isnull=True).prefetch_related("translated_templates")
        )

    @admin.display(description=_("languages"))
    def languages(self, obj: EmailTemplate) -> str:
        return ", ".join(t.language for t in obj.translated_templates.all())

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/preview/", view(self.preview_view), name=f"{name}_preview"),
            path("<path:object_id>/send-test/", view(self.send_test_view), name=f"{name}_send_test"),
            path(
                "<path:object_id>/send-test/<int:email_id>/",
                view(self.send_test_result_view),
                name=f"{name}_send_test_result",
            ),
            path("<path:object_id>/versions/", view(self.versions_view), name=f"{name}_versions"),
            path("<path:object_id>/versions/<int:version_id>/", view(self.version_view), name=f"{name}_version"),
            path(
                "<path:object_id>/versions/<int:version_id>/restore/",
                view(self.restore_version_view),
                name=f"{name}_restore_version",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        template = self.get_object(request, object_id)
        if template is not None and self.has_view_or_change_permission(request, template):
            site = self.admin_site.name
            extra_context["po_preview"] = self.preview_panel(request, template)
            extra_context["po_versions"] = [
                {"template": item, "url": reverse(f"{site}:post_office_emailtemplate_versions", args=[item.pk])}
                for item in [template, *template.translated_templates.all()]
            ]
            if self.has_change_permission(request, template):
                extra_context["po_send_test_url"] = reverse(
                    f"{site}:post_office_emailtemplate_send_test", args=[template.pk]
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: EmailTemplate, form: forms.ModelForm, change: bool) -> None:
        obj.saved_by = request.user.get_username()  # type: ignore[union-attr]
        super().save_model(request, obj, form, change)

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: forms.BaseModelFormSet, change: bool
    ) -> None:
        for inline_form in formset.forms:
            if inline_form.has_changed() and inline_form.instance is not None:
                inline_form.instance.name = form.instance.name
                inline_form.instance.saved_by = request.user.get_username()  # type: ignore[union-attr]
        super().save_formset(request, form, formset, change)
