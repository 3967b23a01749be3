"""Live preview of a template on its change page: a language, a JSON context, the three parts rendered.

The preview renders what is being edited: the change form's current text (not
saved yet) through the same engine and the same rendering function as
delivery (``post_office.rendering.engine.render_parts`` with the database
templates' engine, restricted mode included). A user who may only view the
template (or who posts no form text) sees the saved template through the
public ``render_preview``. The HTML is shown in an ``<iframe sandbox="">``
whose document starts with a Content-Security-Policy that lets nothing load
but ``data:`` images and inline styles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import settings as po_settings
from ..exceptions import MissingVariables
from ..languages import language_chain, normalize_language
from ..models import EmailTemplate
from ..rendering.engine import CompiledTemplates, render_parts
from ..rendering.preview import Preview, render_preview
from ..rendering.variables import sample_context
from ..validation import check_json_context

#: Parts of a template, with the words the warnings use for them.
PARTS = (("subject", _("subject")), ("content", _("plain text")), ("html_content", _("HTML")))
#: The change form's inline formset of translations.
TRANSLATIONS_PREFIX = "translated_templates"
#: Everything a sandboxed preview document may load: data: images and inline styles, nothing remote.
PREVIEW_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'"


#: The styles and script of the preview (and of the other template pages).
PREVIEW_MEDIA = forms.Media(css={"all": ["post_office/template_admin.css"]}, js=["post_office/template_preview.js"])


def language_choices() -> list[tuple[str, str]]:
    return [("", gettext("Base template")), *((normalize_language(code), name) for code, name in settings.LANGUAGES)]


class ContextField(forms.CharField):
    """A JSON object: the variables a template is rendered with."""

    widget = forms.Textarea(attrs={"rows": 8, "cols": 60, "class": "po-context", "spellcheck": "false"})

    def to_python(self, value: Any) -> dict[str, Any]:  # type: ignore[override]
        text = (super().to_python(value) or "").strip()
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(
                _("This is not valid JSON: %(error)s"), code="json", params={"error": error}
            ) from None
        if not isinstance(data, dict):
            raise forms.ValidationError(_('The context must be a JSON object, e.g. {"name": "Alice"}.'))
        return check_json_context(data)


class PreviewForm(forms.Form):
    """The preview's own fields: prefixed, so they never collide with the template form's."""

    prefix = "po_preview"

    language = forms.ChoiceField(label=_("Language"), required=False, choices=language_choices)
    context = ContextField(label=_("Context (JSON)"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stable ids for scripts and browser tests.
        self.fields["language"].widget.attrs["id"] = "po-preview-language"
        self.fields["context"].widget.attrs["id"] = "po-preview-context"


@dataclass
class Sources:
    """The text of a base template and its translations, by language ('' for the base)."""

    parts: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The edited text of a change form (False: the saved template).
    from_form: bool = False

    def choose(self, language: str) -> str | None:
        """The language whose text a recipient in ``language`` gets (the fallback chain of mail.send)."""
        for code in language_chain(language):
            if code in self.parts:
                return code
        return None

    def all_text(self) -> list[str]:
        return [text for parts in self.parts.values() for text in parts.values()]


def saved_sources(template: EmailTemplate) -> Sources:
    family = [template, *template.translated_templates.all()]
    return Sources({item.language: {name: getattr(item, name) for name, _label in PARTS} for item in family})


def form_sources(data: Mapping[str, Any]) -> Sources:
    """The text in a posted change form: the base fields and every translation not marked for deletion."""
    sources = Sources({"": {name: str(data.get(name, "")) for name, _label in PARTS}}, from_form=True)
    try:
        total = min(int(data.get(f"{TRANSLATIONS_PREFIX}-TOTAL_FORMS", 0)), 1000)
    except (TypeError, ValueError):
        total = 0
    for index in range(total):
        prefix = f"{TRANSLATIONS_PREFIX}-{index}-"
        language = normalize_language(data.get(prefix + "language", ""))
        if language and not data.get(prefix + "DELETE"):
            sources.parts[language] = {name: str(data.get(prefix + name, "")) for name, _label in PARTS}
    return sources


def missing_parts(sources: Sources, language: str) -> list[str]:
    """Warnings for each part the base template has and this translation lacks."""
    if not language or language not in sources.parts:
        return []
    base, translated = sources.parts.get("", {}), sources.parts[language]
    return [
        gettext("The %(language)s translation has no %(part)s; the base template has one.")
        % {"language": language, "part": label}
        for name, label in PARTS
        if base.get(name, "").strip() and not translated.get(name, "").strip()
    ]


def all_missing_parts(sources: Sources) -> list[str]:
    return [warning for language in sorted(sources.parts) for warning in missing_parts(sources, language)]


def sandboxed_document(html: str) -> str:
    """The HTML to put in an ``<iframe sandbox srcdoc>``: a CSP first, so nothing remote ever loads."""
    return f'<meta http-equiv="Content-Security-Policy" content="{PREVIEW_CSP}">{html}'


@dataclass
class PreviewResult:
    preview: Preview | None = None
    used_language: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def srcdoc(self) -> str:
        return sandboxed_document(self.preview.html_with_data_uris()) if self.preview else ""


def render(template: EmailTemplate, sources: Sources, language: str, context: dict[str, Any]) -> PreviewResult:
    """Render the chosen language of these sources; errors become a message, never an exception."""
    used = sources.choose(language)
    result = PreviewResult(used_language=used)
    if used is None:
        result.error = gettext("No template for %(language)s and no base template to fall back to.") % {
            "language": language
        }
        return result
    if used != language:
        result.warnings.append(
            gettext("There is no %(language)s translation: this is the text it falls back to (%(used)s).")
            % {"language": language, "used": used or gettext("base template")}
        )
    result.warnings.extend(missing_parts(sources, used))
    for strict in (True, False):
        try:
            result.preview = _render_once(template, sources, used, language, context, strict)
            break
        except MissingVariables as error:
            result.warnings.append(
                gettext("Not in the context (rendered empty): %(names)s") % {"names": ", ".join(error.value)}
            )
        except Exception as error:  # noqa: BLE001 - a template's author sees why it failed, not a 500
            result.error = gettext("The template could not be rendered: %(error)s") % {
                "error": f"{type(error).__name__}: {error}"
            }
            break
    return result


def _render_once(
    template: EmailTemplate, sources: Sources, used: str, language: str, context: dict[str, Any], strict: bool
) -> Preview:
    if not sources.from_form:
        return render_preview(template, context, language, strict=strict)
    parts = sources.parts[used]
    rendered = render_parts(
        parts["subject"],
        parts["content"],
        parts["html_content"],
        context,
        language=language or used,
        compiled=CompiledTemplates().for_database_templates(),
        strict=strict,
        auto_plain_text=po_settings.AUTO_PLAIN_TEXT,
        source=f"template {template.name!r}",
    )
    return Preview(
        subject=rendered.subject,
        message=rendered.message,
        html_message=rendered.html_message,
        inline_images=rendered.inline_images,
        template_language=used,
    )


class TemplatePreviewMixin:
    """The preview view of EmailTemplateAdmin (``<id>/preview/``) and the panel on the change page."""

    admin_site: Any
    model: type[EmailTemplate]

    def preview_panel(self, request: HttpRequest, template: EmailTemplate) -> dict[str, Any]:
        """What the change page's preview panel shows before anything is posted."""
        sources = saved_sources(template)
        sample = json.dumps(sample_context(*sources.all_text()), indent=2, ensure_ascii=False)
        form = PreviewForm(initial={"language": "", "context": sample})
        url = reverse(f"{self.admin_site.name}:post_office_emailtemplate_preview", args=[template.pk])
        return {"form": form, "url": url, "warnings": all_missing_parts(sources)}

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if template is None:
            raise Http404
        if not self.has_view_or_change_permission(request, template):  # type: ignore[attr-defined]
            raise PermissionDenied
        may_edit = self.has_change_permission(request, template)  # type: ignore[attr-defined]
        # Only someone who may change the template may have text rendered that is not saved.
        use_form = request.method == "POST" and may_edit and "content" in request.POST
        sources = form_sources(request.POST) if use_form else saved_sources(template)
        if request.method == "POST":
            form = PreviewForm(request.POST)
        else:
            sample = json.dumps(sample_context(*sources.all_text()), indent=2, ensure_ascii=False)
            form = PreviewForm(initial={"language": "", "context": sample})
        result = None
        if form.is_bound and form.is_valid():
            context = form.cleaned_data["context"] or sample_context(*sources.all_text())
            result = render(template, sources, normalize_language(form.cleaned_data["language"]), context)
        carried = [
            (name, value)
            for name, value in request.POST.items()
            if use_form and (name in dict(PARTS) or name.startswith(f"{TRANSLATIONS_PREFIX}-"))
        ]
        context = {
            "result": result,
            "form": form,
            "from_form": sources.from_form,
            "carried": carried,
            "template": template,
        }
        if request.POST.get("_po_fragment"):
            return TemplateResponse(request, "admin/post_office/emailtemplate/preview_result.html", context)
        request.current_app = self.admin_site.name  # the admin's own {% url 'admin:...' %} links
        opts = self.model._meta
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "title": gettext("Preview of %(template)s") % {"template": template},
                "original": template,
                "url": request.path,
                "media": self.media + PREVIEW_MEDIA,  # type: ignore[attr-defined]
                "change_url": reverse(f"{self.admin_site.name}:post_office_emailtemplate_change", args=[template.pk]),
            }
        )
        return TemplateResponse(request, "admin/post_office/emailtemplate/preview.html", context)
