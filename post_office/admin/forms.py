"""Admin forms: every value checked by the rules ``mail.send`` applies."""

from __future__ import annotations

import datetime

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from ..exceptions import InvalidArgument
from ..languages import normalize_language
from ..models import Email, EmailTemplate
from ..validation import (
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
