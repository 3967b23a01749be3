"""Admin forms for templates and their translations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template import TemplateSyntaxError
from django.utils.translation import gettext_lazy as _

from ..languages import normalize_language
from ..models import EmailTemplate
from ..restricted import database_template_engine
from ..validation import compile_source, syntax_error_line


class TemplateEditor(forms.Textarea):
    """A textarea for template code; post_office/template_editor.js adds line numbers, Tab indents and tag marks.

    Without JavaScript it stays a plain (monospace) textarea.
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        defaults = {
            "class": "vLargeTextField po-code-editor",
            "rows": 14,
            "cols": 80,
            "spellcheck": "false",
            "autocomplete": "off",
            "autocapitalize": "off",
        }
        super().__init__({**defaults, **(attrs or {})})

    class Media:
        css = {"all": ["post_office/template_admin.css"]}
        js = ["post_office/template_editor.js"]


class TemplateSourceForm(forms.ModelForm):
    """Each template source is compiled on its own: a syntax error shows at its field, with its line."""

    def _check_source(self, name: str) -> str:
        value = self.cleaned_data.get(name) or ""
        if not value:
            return value
        try:
            compile_source(database_template_engine(), value)
        except TemplateSyntaxError as error:
            line = syntax_error_line(error)
            if line is None:
                raise ValidationError(str(error), code="template_syntax") from None
            # The editor marks the line (template_editor.js reads this attribute).
            self.fields[name].widget.attrs["data-error-line"] = str(line)
            raise ValidationError(
                _("Line %(line)s: %(error)s"), code="template_syntax", params={"line": line, "error": error}
            ) from None
        return value

    def clean_subject(self) -> str:
        return self._check_source("subject")

    def clean_content(self) -> str:
        return self._check_source("content")

    def clean_html_content(self) -> str:
        return self._check_source("html_content")

    def _update_errors(self, errors: ValidationError) -> None:
        # The model's clean() compiles the same sources: a field that already has its own
        # error (translated, with the line) does not get the model's copy of it as well.
        if hasattr(errors, "error_dict"):
            kept = {
                field: messages
                for field, messages in errors.error_dict.items()
                if not (field in EmailTemplate.TEMPLATE_FIELDS and field in self.errors)
            }
            errors = ValidationError(kept)
        super()._update_errors(errors)  # type: ignore[misc]


class EmailTemplateForm(TemplateSourceForm):
    """The base template: its name, description and the three sources."""

    class Meta:
        model = EmailTemplate
        fields = ("name", "description", "subject", "content", "html_content")
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "content": TemplateEditor(),
            "html_content": TemplateEditor(),
        }


class TranslationForm(TemplateSourceForm):
    language = forms.ChoiceField(label=_("language"), choices=lambda: list(settings.LANGUAGES))

    class Meta:
        model = EmailTemplate
        fields = ("language", "subject", "content", "html_content")
        widgets = {"content": TemplateEditor(), "html_content": TemplateEditor()}

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
