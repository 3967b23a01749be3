"""Send a test of a template: queued by ``mail.send`` with priority 'now', then what happened.

Sending needs the change permission on the template (whoever may edit a
template may try it out; a view-only user may not send mail). The test goes
through ``mail.send``, so every check it makes applies; 'now' mail is
delivered when the transaction commits, and the result page (a GET after the
POST's redirect) reads the email's status and its delivery attempts.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import mail
from ..choices import STATUS
from ..exceptions import InvalidEmail
from ..languages import normalize_language
from ..models import Email, EmailTemplate
from ..rendering.variables import sample_context
from ..validation import parse_address
from .template_preview import PREVIEW_MEDIA, ContextField, language_choices, saved_sources


class TestSendForm(forms.Form):
    to = forms.CharField(
        label=_("Send to"),
        max_length=320,
        widget=forms.EmailInput(attrs={"id": "po-test-to", "size": 40, "autocomplete": "email"}),
        help_text=_("One address. The test is sent at once (priority 'now')."),
    )
    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=language_choices,
        widget=forms.Select(attrs={"id": "po-test-language"}),
    )
    context = ContextField(label=_("Context (JSON)"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["context"].widget.attrs["id"] = "po-test-context"

    def clean_to(self) -> str:
        try:
            return parse_address(self.cleaned_data["to"], "to")
        except InvalidEmail as error:
            raise forms.ValidationError(
                _("%(address)s is not a valid email address."), params={"address": self.cleaned_data["to"]}
            ) from error


class TemplateTestSendMixin:
    """``<id>/send-test/`` (the form, and the POST that queues) and ``<id>/send-test/<email id>/`` (the result)."""

    admin_site: Any
    model: type[EmailTemplate]

    def _template_to_test(self, request: HttpRequest, object_id: str) -> EmailTemplate:
        template = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if template is None:
            raise Http404
        if not self.has_change_permission(request, template):  # type: ignore[attr-defined]
            raise PermissionDenied
        return template

    def _page(self, request: HttpRequest, template: EmailTemplate, page: str, **context: Any) -> TemplateResponse:
        request.current_app = self.admin_site.name  # the admin's own {% url 'admin:...' %} links
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": template,
                "media": self.media + PREVIEW_MEDIA,  # type: ignore[attr-defined]
                "change_url": reverse(f"{self.admin_site.name}:post_office_emailtemplate_change", args=[template.pk]),
                "send_test_url": reverse(
                    f"{self.admin_site.name}:post_office_emailtemplate_send_test", args=[template.pk]
                ),
            }
        )
        return TemplateResponse(request, f"admin/post_office/emailtemplate/{page}.html", context)

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = self._template_to_test(request, object_id)
        if request.method == "POST":
            form = TestSendForm(request.POST)
            if form.is_valid():
                try:
                    email = mail.send(
                        [form.cleaned_data["to"]],
                        template=template,
                        language=normalize_language(form.cleaned_data["language"]),
                        context=form.cleaned_data["context"],
                        priority="now",
                    )
                except InvalidEmail as error:
                    form.add_error(None, str(error))
                else:
                    messages.info(request, gettext("The test was queued to %(to)s.") % {"to": form.cleaned_data["to"]})
                    return HttpResponseRedirect(
                        reverse(
                            f"{self.admin_site.name}:post_office_emailtemplate_send_test_result",
                            args=[template.pk, email.pk],
                        )
                    )
        else:
            sample = sample_context(*saved_sources(template).all_text())
            form = TestSendForm(
                initial={"to": request.user.email, "context": json.dumps(sample, indent=2, ensure_ascii=False)}  # type: ignore[union-attr]
            )
        title = gettext("Send a test of %(template)s") % {"template": template}
        return self._page(request, template, "send_test", form=form, title=title)

    def send_test_result_view(self, request: HttpRequest, object_id: str, email_id: str) -> HttpResponse:
        template = self._template_to_test(request, object_id)
        family = [template.pk, *template.translated_templates.values_list("pk", flat=True)]
        email = get_object_or_404(Email, pk=email_id, template_id__in=family)
        logs = list(email.logs.order_by("date", "pk"))
        email_url = None
        email_admin = self.admin_site._registry.get(Email)
        if email_admin is not None and email_admin.has_view_or_change_permission(request, email):
            email_url = reverse(f"{self.admin_site.name}:post_office_email_change", args=[email.pk])
        outcome = {int(STATUS.sent): "sent", int(STATUS.failed): "failed"}.get(email.status, "queued")
        title = gettext("Test of %(template)s") % {"template": template}
        return self._page(
            request,
            template,
            "send_test_result",
            email=email,
            logs=logs,
            outcome=outcome,
            email_url=email_url,
            title=title,
        )
