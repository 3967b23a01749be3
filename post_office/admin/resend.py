"""Resend: a new queued copy of a sent or failed email; the original and its history stay as they are.

A copy is queued through the enqueue layer (:func:`post_office.enqueue.store.persist`),
like ``mail.send``: the ``email_queued`` signal fires when the transaction
commits, and a copy of priority ``now`` is delivered then. It keeps the
original's content, headers (with a new Message-ID), attachments (the same
rows), template, language, context, backend alias and priority; an email
rendered on delivery is copied unrendered and rendered when the copy is sent.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..choices import STATUS
from ..enqueue.prepare import Prepared
from ..enqueue.store import persist
from ..exceptions import InvalidEmail
from ..message.parts import new_message_id
from ..models import Attachment, Email
from ..validation import parse_addresses
from .email_detail import RESENDABLE, render_detail

#: The most emails the "Resend" action queues at once (a safeguard against resending a whole table).
MAX_RESEND = 1000

#: What a copy takes over from the original unchanged.
COPIED_FIELDS = (
    "from_email",
    "subject",
    "message",
    "html_message",
    "alternatives",
    "context",
    "template_id",
    "template_file",
    "language",
    "template_language",
    "backend_alias",
    "priority",
)


class ResendForm(forms.Form):
    recipients = forms.CharField(
        label=_("New recipients"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_(
            "One address per line. Leave it empty to send the copy to the original recipients (to, cc and bcc); "
            "with an address, the copy goes only there."
        ),
    )

    def clean_recipients(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["recipients"].splitlines() if line.strip()]
        try:
            return parse_addresses(lines, "recipients")
        except InvalidEmail as error:
            raise forms.ValidationError(str(error), code="invalid") from None


def resend_copy(original: Email, to: list[str] | None = None) -> Email:
    """Queue a copy of ``original`` (to ``to`` only, when given) and return it; the original is not touched."""
    headers = {name: value for name, value in (original.headers or {}).items() if name.lower() != "message-id"}
    duplicate = Email(
        **{name: getattr(original, name) for name in COPIED_FIELDS},
        to=list(to) if to else list(original.to),
        cc=[] if to else list(original.cc),
        bcc=[] if to else list(original.bcc),
        headers=headers or None,
        status=STATUS.queued,
        message_id=new_message_id(),
    )
    duplicate.checked = True  # a copy of a stored email: delivery checks it as it checks the original
    attachments = list(original.attachments.values_list("pk", flat=True))
    with transaction.atomic():
        persist([Prepared(duplicate)])
        if attachments:
            # Linked again, so cleanup_mail's grace period starts anew for them.
            Attachment.objects.filter(pk__in=attachments).update(last_used=timezone.now())
            duplicate.attachments.add(*attachments)
    return duplicate


class ResendMixin:
    """EmailAdmin's resend page (one email, optionally to another address) and its "Resend" action."""

    admin_site: admin.AdminSite
    opts: Any

    def resend_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: the confirmation page. POST (CSRF, change permission): queue the copy, go to its page."""
        obj = self._email_or_404(request, pk)  # type: ignore[attr-defined]
        if not self.may_resend(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        resendable = obj.status in RESENDABLE
        if request.method == "POST" and resendable:
            form = ResendForm(request.POST)
            if form.is_valid():
                duplicate = resend_copy(obj, form.cleaned_data["recipients"])
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    gettext("A copy of email #%(original)s was queued as email #%(copy)s, to %(to)s.")
                    % {"original": obj.pk, "copy": duplicate.pk, "to": ", ".join(duplicate.to)},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self.url("post_office_email_change", quote(duplicate.pk)))  # type: ignore[attr-defined]
        else:
            mine = getattr(request.user, "email", "") if request.GET.get("to") == "me" else ""
            form = ResendForm(initial={"recipients": mine})
        context = {
            "title": gettext("Resend email #%(pk)s") % {"pk": obj.pk},
            "object": obj,
            "original": obj,
            "form": form,
            "resendable": resendable,
            "own_address": getattr(request.user, "email", ""),
            "change_url": self.url("post_office_email_change", quote(obj.pk)),  # type: ignore[attr-defined]
            "changelist_url": self.url("post_office_email_changelist"),  # type: ignore[attr-defined]
        }
        return render_detail(self, request, "admin/post_office/email/resend_confirmation.html", context)

    @admin.action(description=_("Resend selected sent or failed emails"), permissions=["change"])
    def resend_emails(self, request: HttpRequest, queryset: QuerySet[Email]) -> HttpResponse | None:
        """A confirmation page first; once confirmed (a second POST), queue a copy of each sent or failed email."""
        resendable = queryset.filter(status__in=RESENDABLE).order_by("pk")
        count = resendable.count()
        skipped = queryset.count() - count
        if request.POST.get("post") == "yes" and count:
            if count > MAX_RESEND:
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    gettext("At most %(limit)d emails can be resent at once; select fewer.") % {"limit": MAX_RESEND},
                    messages.ERROR,
                )
                return None
            for original in resendable:
                resend_copy(original)
            self.message_user(  # type: ignore[attr-defined]
                request,
                ngettext("A copy of %(count)d email was queued.", "Copies of %(count)d emails were queued.", count)
                % {"count": count},
                messages.SUCCESS,
            )
            if skipped:
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    ngettext(
                        "%(count)d email was skipped: only sent or failed emails are resent.",
                        "%(count)d emails were skipped: only sent or failed emails are resent.",
                        skipped,
                    )
                    % {"count": skipped},
                    messages.WARNING,
                )
            return None
        context = {
            "title": gettext("Resend emails"),
            "emails": list(resendable[:100]),
            "count": count,
            "more": max(count - 100, 0),
            "skipped": skipped,
            "too_many": count > MAX_RESEND,
            "limit": MAX_RESEND,
            "queryset": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "changelist_url": self.url("post_office_email_changelist"),  # type: ignore[attr-defined]
        }
        return render_detail(self, request, "admin/post_office/email/resend_selected_confirmation.html", context)
