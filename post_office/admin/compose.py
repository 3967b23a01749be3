"""Composing or editing a queued email: the form goes through ``mail.send``'s own validation and rendering.

Addresses are plain fields (one per line), headers ``Name: value`` lines; the
values make an :class:`~post_office.enqueue.request.EmailRequest` that is
prepared exactly as ``mail.send`` prepares one, so what is stored is what is sent.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.db import transaction
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..choices import PRIORITY
from ..conf import settings as po_settings
from ..enqueue.prepare import Prepared
from ..enqueue.request import EmailRequest
from ..enqueue.store import EDITABLE, prepare_one
from ..exceptions import InvalidEmail, TemplateRenderError, TemplateSyntaxInvalid
from ..models import Email, EmailTemplate
from ..transport.connections import delivery_aliases
from ..validation import parse_priority

#: Where an error about one of ``mail.send``'s arguments shows in the form.
_ARGUMENT_FIELDS = {
    "recipients": "to",
    "cc": "cc",
    "bcc": "bcc",
    "sender": "from_email",
    "backend": "backend_alias",
    "template": "template",
    "context": "context",
    "headers": "headers",
    "subject": "subject",
    "message": "message",
    "html_message": "html_message",
    "priority": "priority",
    "scheduled_time": "scheduled_time",
    "expires_at": "expires_at",
    "language": "language",
    "render_on_delivery": "render_on_delivery",
    "attachments": None,
}


class AddressListField(forms.CharField):
    """A list of addresses edited one per line (never split on commas: a display name may hold one)."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 60})

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        return [line.strip() for line in str(text).splitlines() if line.strip()]


class HeaderLinesField(forms.CharField):
    """Extra headers as ``Name: value`` lines (the rules of ``mail.send``'s ``headers`` apply after)."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 60})

    def prepare_value(self, value: object) -> object:
        if isinstance(value, dict):
            return "\n".join(f"{name}: {text}" for name, text in value.items())
        return value

    def to_python(self, value: object) -> dict[str, str] | None:  # type: ignore[override]
        headers: dict[str, str] = {}
        for number, line in enumerate(str(super().to_python(value)).splitlines(), start=1):
            if not line.strip():
                continue
            name, colon, text = line.partition(":")
            if not colon or not name.strip():
                raise forms.ValidationError(
                    _("Line %(number)d is not a header: write it as 'Name: value'."), params={"number": number}
                )
            headers[name.strip()] = text.strip()
        return headers or None


class ContextField(forms.JSONField):
    """A template context as JSON; empty when there is none (not the text "null")."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class TemplateNameInput(forms.TextInput):
    """A template name, with the database templates offered as suggestions (``file:...`` may be typed)."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        list_id = f"{(attrs or {}).get('id') or name}_choices"
        html = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        names = EmailTemplate.objects.filter(default_template__isnull=True).order_by("name")
        options = format_html_join(
            "", '<option value="{}">', ((n,) for n in names.values_list("name", flat=True)[:500])
        )
        return format_html('{}<datalist id="{}">{}</datalist>', html, list_id, options)


def _language_choices() -> list[tuple[str, str]]:
    return [("", str(_("default"))), *((code, f"{code} ({name})") for code, name in settings.LANGUAGES)]


def _alias_choices() -> list[tuple[str, str]]:
    return [("", str(_("default"))), *((alias, alias) for alias in sorted(delivery_aliases() - {"default"}))]


class EmailForm(forms.ModelForm):
    """Compose or edit a queued email; cleaning prepares it as ``mail.send`` would (nothing stored yet)."""

    from_email = forms.CharField(
        label=_("from"), required=False, help_text=_("Blank: the project's DEFAULT_FROM_EMAIL.")
    )
    to = AddressListField(label=_("to"), required=False, help_text=_("One address per line."))
    cc = AddressListField(label=_("cc"), required=False, help_text=_("One address per line."))
    bcc = AddressListField(label=_("bcc"), required=False, help_text=_("One address per line."))
    template = forms.CharField(
        label=_("template"),
        required=False,
        widget=TemplateNameInput(attrs={"size": 40}),
        help_text=_("A template's name; it then provides the subject and both bodies (leave them blank)."),
    )
    language = forms.ChoiceField(label=_("language"), required=False, choices=_language_choices)
    context = ContextField(
        label=_("context"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=_('Template variables as JSON, e.g. {"name": "Alice"}. With plain text, it renders the text too.'),
    )
    render_on_delivery = forms.BooleanField(
        label=_("render on delivery"),
        required=False,
        help_text=_("Store the template and context; render when the email is sent."),
    )
    headers = HeaderLinesField(
        label=_("headers"), required=False, help_text=_("Extra headers, one 'Name: value' per line.")
    )
    priority = forms.TypedChoiceField(label=_("priority"), coerce=int, choices=PRIORITY.choices)
    backend_alias = forms.ChoiceField(label=_("backend alias"), required=False, choices=_alias_choices)

    class Meta:
        model = Email
        fields = [
            "from_email",
            "to",
            "cc",
            "bcc",
            "template",
            "language",
            "context",
            "subject",
            "message",
            "html_message",
            "headers",
            "priority",
            "scheduled_time",
            "expires_at",
            "backend_alias",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The email as ``mail.send`` would store it, once the form is valid.
        self.prepared: Prepared | None = None
        email = self.instance
        if email.pk is None:
            self.initial.setdefault("priority", parse_priority(po_settings.DEFAULT_PRIORITY, "DEFAULT_PRIORITY"))
            return
        stored_for_delivery = email.context is not None and bool(email.template_id or email.template_file)
        self.initial["render_on_delivery"] = stored_for_delivery
        self.initial["template"] = (
            (email.template.name if email.template_id and email.template else email.template_file)
            if stored_for_delivery
            else ""
        )
        if email.template_id and not stored_for_delivery:
            # Rendered when it was queued: its text is edited as text, and it stays linked to its template.
            self.fields["template"].help_text = format_html(
                "{} <strong>{}</strong>", _("Rendered from the template"), email.template
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        if self.instance.pk is not None and not _still_editable(self.instance):
            raise forms.ValidationError(
                _("This email was claimed for delivery or sent meanwhile; it can no longer be edited.")
            )
        try:
            self.prepared = prepare_one(self._request(cleaned))
        except TemplateSyntaxInvalid as error:
            for field, message in error.errors.items():
                self.add_error(_ARGUMENT_FIELDS.get(field, None), message)
        except InvalidEmail as error:
            self.add_error(_error_field(error.field), str(error))
        except TemplateRenderError as error:
            self.add_error("context" if cleaned.get("context") is not None else None, str(error))
        return cleaned

    def _request(self, cleaned: dict[str, Any]) -> EmailRequest:
        return EmailRequest(
            recipients=cleaned["to"],
            cc=cleaned["cc"],
            bcc=cleaned["bcc"],
            sender=cleaned["from_email"] or None,
            template=cleaned["template"] or None,
            context=cleaned["context"],
            subject=cleaned["subject"],
            message=cleaned["message"],
            html_message=cleaned["html_message"],
            headers=cleaned["headers"],
            priority=cleaned["priority"],
            scheduled_time=cleaned["scheduled_time"],
            expires_at=cleaned["expires_at"],
            render_on_delivery=cleaned["render_on_delivery"],
            language=cleaned["language"],
            backend=cleaned["backend_alias"],
            alternatives=list(self.instance.alternatives or []) if self.instance.pk else [],
        )

    def _post_clean(self) -> None:
        # mail.send's rules replaced the model's validation (in clean()); a new email is the prepared one.
        prepared = self.prepared
        if prepared is None:
            return
        if self.instance.pk is None:
            self.instance = prepared.email
            return
        edited, original = prepared.email, self.instance
        if not (edited.template_id or edited.template_file) and original.template_id:
            # Rendered from a template when queued and edited as text: it stays linked to its template.
            edited.template, edited.template_language = original.template, original.template_language
        if not any(name.lower() == "message-id" for name in edited.headers or {}):
            edited.message_id = original.message_id


def _still_editable(email: Email) -> bool:
    """Lock the row until the admin's transaction ends, if no worker holds it and it was never sent."""
    rows = Email.objects.filter(pk=email.pk, status__in=EDITABLE)
    if transaction.get_connection(rows.db).in_atomic_block:
        rows = rows.select_for_update()
    return rows.exists()


def _error_field(argument: str) -> str | None:
    """The form field an error on ``mail.send``'s argument belongs to (``headers['X']`` is headers)."""
    for separator in ("[", " ", "."):
        argument = argument.split(separator)[0]
    return _ARGUMENT_FIELDS.get(argument)
