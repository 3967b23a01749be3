"""An email's detail page: the message as delivered, its attempts, and the sandboxed views the page embeds.

The HTML body is never put in the admin's own page: it is served by
:meth:`EmailDetailMixin.html_view` with a ``sandbox`` Content-Security-Policy
and shown in an ``<iframe sandbox>``, so no script of the email runs and
nothing remote loads. Its ``cid:`` images are written into it as ``data:``
URIs (a sandboxed document has an opaque origin, which browsers do not send
the admin's session cookie from); an image too large for that is linked to
:meth:`EmailDetailMixin.image_view`, which checks the permission like every
view here.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote as url_unquote

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_sameorigin

from ..choices import CLAIMABLE, STATUS
from ..enqueue.store import EDITABLE
from ..message.parts import headers_of
from ..models import Attachment, DeliverySwitch, Email, EmailTemplate, Log
from .attachments import download_link

#: States a resend copies from.
RESENDABLE = (STATUS.sent, STATUS.failed)

#: Inline images up to this size are written into the HTML as ``data:`` URIs; larger ones are linked to the
#: image view (which a sandboxed frame reaches without the session cookie, so the browser shows them broken).
DATA_URI_LIMIT = 10 * 1024 * 1024

#: The attempts listed on the page (newest first); older ones are counted, and in the Log admin.
ATTEMPTS_SHOWN = 100

#: How the page writes times: to the second, with the time zone (a support person compares them with logs).
TIME_FORMAT = "Y-m-d H:i:s T"

#: ``cid:`` references in HTML (src attributes, CSS ``url()``), up to a quote, space, bracket or angle bracket.
CID_REFERENCE = re.compile(r"""cid:([^\s"'()<>]+)""", re.IGNORECASE)


@dataclass
class Shown:
    """What the page shows of an email's content: as stored, or rendered now (``rendered_now``)."""

    subject: str = ""
    text: str = ""
    html: str = ""
    #: Inline images rendered now (render_on_delivery), by Content-ID: (content, mimetype).
    images: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    rendered_now: bool = False
    #: Why rendering now failed (the page shows it instead of the content).
    error: str = ""


def renders_on_delivery(obj: Email) -> bool:
    """Whether the email is stored unrendered (a context, and a template to render it with), as delivery decides."""
    return obj.context is not None


def as_delivered(obj: Email) -> Shown:
    """The subject, text and HTML the recipient gets (rendered now, the way delivery does, if stored unrendered)."""
    if not renders_on_delivery(obj):
        return Shown(obj.subject, obj.message, obj.html_message)
    # The worker's own path: Email.email_message(). Attachments are not read (only the rendered parts are used).
    unread = copy.copy(obj)
    unread.loaded_attachments = []
    unread.pending_recipients = None
    try:
        message: Any = unread.email_message()
    except Exception as error:  # noqa: BLE001 - whatever the template or its context raises is shown, not a 500
        return Shown(rendered_now=True, error=f"{type(error).__name__}: {error}")
    html = ""
    text = str(message.body)
    if message.content_subtype == "html":
        html, text = text, ""
    else:
        html = next((str(content) for content, mimetype in message.alternatives if mimetype == "text/html"), "")
    images = {}
    for content, mimetype, _filename, headers in getattr(message, "related", []):
        cid = _content_id(headers)
        if cid:
            images[cid] = (content, mimetype)
    return Shown(str(message.subject), text, html, images, rendered_now=True)


def _content_id(headers: dict[str, str] | None) -> str:
    """The Content-ID in part headers, without its angle brackets ('' when there is none)."""
    for name, value in (headers or {}).items():
        if name.lower() == "content-id":
            return str(value).strip().strip("<>").strip()
    return ""


def _cid_matches(cid: str, wanted: str) -> bool:
    """A Content-ID asked for by a URL: the whole of it, or django-post_office's 32 first characters."""
    return cid == wanted or (len(wanted) == 32 and cid[:32] == wanted)


def inline_attachments(obj: Email) -> list[tuple[str, Attachment]]:
    """The email's stored attachments that an HTML part can reference by ``cid:``, with their Content-IDs."""
    found = []
    for attachment in obj.attachments.order_by("pk"):
        cid = _content_id(attachment.headers)
        if cid:
            found.append((cid, attachment))
    return found


def _read(attachment: Attachment, limit: int | None = None) -> bytes | None:
    """An attachment's content (None when it is missing, unreadable or larger than ``limit``)."""
    storage, name = attachment.file.storage, attachment.file.name
    if not name:
        return None
    try:
        if limit is not None and storage.size(name) > limit:
            return None
        with storage.open(name, "rb") as handle:
            content = handle.read()
    except Exception:  # noqa: BLE001 - any storage's error: the image is shown as missing
        return None
    return bytes(content)


def _data_uri(content: bytes, mimetype: str) -> str:
    return f"data:{mimetype};base64,{base64.b64encode(content).decode('ascii')}"


def _is_image(mimetype: str) -> bool:
    return mimetype.lower().startswith("image/")


class EmailDetailMixin:
    """EmailAdmin's detail page, and the HTML, image and resend views under django-post_office's URL names."""

    admin_site: admin.AdminSite
    opts: Any
    change_form_template: Any = "admin/post_office/email/change_form.html"

    # -- permissions: the history of a sent or failed email is never edited in place -----------

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Only queued or cancelled mail (enqueue.store.EDITABLE) is edited in the form.

        Sent, failed and sending mail is history: it changes only through the
        actions (retry, resend), which ask for the change permission on emails.
        """
        allowed: bool = super().has_change_permission(request, obj)  # type: ignore[misc]
        if obj is not None and isinstance(obj, Email) and obj.status not in EDITABLE:
            return False
        return allowed

    def may_view(self, request: HttpRequest) -> bool:
        """The view (or change) permission on emails, as the change list asks for."""
        return bool(self.has_view_permission(request))  # type: ignore[attr-defined]

    def may_change(self, request: HttpRequest) -> bool:
        """The change permission on emails (whatever the state of one)."""
        return bool(super().has_change_permission(request))  # type: ignore[misc]

    def may_resend(self, request: HttpRequest, obj: Email | None = None) -> bool:
        """The change permission on emails (a resend writes a new one); ``obj``: one that can be resent."""
        return self.may_change(request) and (obj is None or obj.status in RESENDABLE)

    # -- URLs ------------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        resend = wrap(self.resend_view)  # type: ignore[attr-defined]
        ours = [
            # django-post_office 3.12's names and arguments (pk; pk and content_id), so its links work.
            path("<int:pk>/preview/", wrap(self.html_view), name="post_office_email_preview"),
            path("<int:pk>/image/<path:content_id>", wrap(self.image_view), name="post_office_email_image"),
            path("<int:pk>/resend/", resend, name="post_office_email_resend"),
            # django-post_office 3.12 named its resend view plainly "resend" in the admin namespace.
            path("<int:pk>/resend/", resend, name="resend"),
        ]
        return [*ours, *super().get_urls()]  # type: ignore[misc]

    def url(self, name: str, *args: Any, **kwargs: Any) -> str:
        """A URL of this admin site by its name (``post_office_email_...``)."""
        return reverse(f"{self.admin_site.name}:{name}", args=args or None, kwargs=kwargs or None)

    def _email_or_404(self, request: HttpRequest, pk: Any) -> Email:
        if not self.may_view(request):
            raise PermissionDenied
        obj = self.get_object(request, str(pk))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404(gettext("No such email."))
        return obj  # type: ignore[no-any-return]

    # -- the page --------------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id) if self.may_view(request) else None  # type: ignore[attr-defined]
        if request.method == "POST" and obj is not None and obj.status not in EDITABLE and self.may_change(request):
            # Opened while queued, claimed or sent before the save: say so, rather than a bare 403.
            self.message_user(  # type: ignore[attr-defined]
                request,
                gettext("This email was claimed for delivery or sent meanwhile; your changes were not saved."),
                messages.ERROR,
            )
            return HttpResponseRedirect(request.path)
        if request.method == "GET" and obj is not None:
            context.update(self.detail_context(request, obj))
        return super().change_view(request, object_id, form_url, context)  # type: ignore[misc]

    def detail_context(self, request: HttpRequest, obj: Email) -> dict[str, Any]:
        """Everything the detail page shows (``po_`` names in the template context)."""
        shown = as_delivered(obj)
        logs = list(obj.logs.order_by("-date", "-id")[:ATTEMPTS_SHOWN])
        total = len(logs) if len(logs) < ATTEMPTS_SHOWN else obj.logs.count()
        sent_log = next((log for log in logs if log.status == STATUS.sent), None)
        failures = [log for log in logs if log.status == STATUS.failed]
        return {
            "po_email": obj,
            "po_shown": shown,
            "po_editable": self.has_change_permission(request, obj),
            "po_failed": obj.status == STATUS.failed,
            "po_unsent": obj.status in EDITABLE,
            "po_fallback": _fallback(obj),
            "po_rendered_now": shown.rendered_now,
            "po_html_url": self.url("post_office_email_preview", pk=obj.pk) if shown.html else "",
            "po_recipients": _recipients(obj),
            "po_headers": list(headers_of(obj).items()),
            "po_attachments": self._attachment_rows(obj),
            "po_logs": logs,
            "po_logs_total": total,
            "po_logs_url": self._logs_url(obj),
            "po_last_error": failures[0] if failures and obj.status in (STATUS.failed, STATUS.requeued) else None,
            "po_sent_at": sent_log.date if sent_log else (obj.last_updated if obj.status == STATUS.sent else None),
            "po_handled_by": logs[0].worker if logs else "",
            "po_next_attempt": next_attempt(obj),
            "po_paused": obj.status in CLAIMABLE and DeliverySwitch.is_paused(),
            "po_template_url": self._template_url(obj),
            "po_backend": obj.backend_alias or gettext("default"),
            "po_time_format": TIME_FORMAT,
            "po_can_resend": self.may_resend(request, obj),
            "po_resend_url": self.url("post_office_email_resend", pk=obj.pk),
        }

    def _attachment_rows(self, obj: Email) -> list[dict[str, Any]]:
        """Name, type, size and a permission-checked link of each attachment (inline images marked)."""
        rows = []
        for attachment in obj.attachments.order_by("pk"):
            cid = _content_id(attachment.headers)
            rows.append(
                {
                    "attachment": attachment,
                    "link": download_link(self.admin_site, attachment),
                    "size": _size(attachment),
                    "content_id": cid,
                    "image_url": self.url("post_office_email_image", pk=obj.pk, content_id=cid)
                    if cid and _is_image(attachment.mimetype)
                    else "",
                }
            )
        return rows

    def _logs_url(self, obj: Email) -> str:
        if not self.admin_site.is_registered(Log):
            return ""
        try:
            return f"{self.url('post_office_log_changelist')}?email__id__exact={obj.pk}"
        except NoReverseMatch:
            return ""

    def _template_url(self, obj: Email) -> str:
        if obj.template_id is None or not self.admin_site.is_registered(EmailTemplate):
            return ""
        try:
            return self.url("post_office_emailtemplate_change", quote(obj.template_id))
        except NoReverseMatch:
            return ""

    # -- the embedded views ----------------------------------------------------------------------

    @xframe_options_sameorigin
    def html_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The HTML body as delivered, for the page's ``<iframe sandbox>``: no script, nothing remote."""
        obj = self._email_or_404(request, pk)
        shown = as_delivered(obj)
        if not shown.html:
            raise Http404(gettext("This email has no HTML part."))
        images_path = self.url("post_office_email_image", pk=obj.pk, content_id="x")[:-1]
        html = CID_REFERENCE.sub(lambda match: self._image_source(obj, shown, match, images_path), shown.html)
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = (
            "sandbox; default-src 'none'; "
            f"img-src data: {request.build_absolute_uri(images_path)}; "
            "style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"
        )
        _private(response)
        return response

    def _image_source(self, obj: Email, shown: Shown, match: re.Match[str], images_path: str) -> str:
        """A ``cid:`` reference made a ``data:`` URI, or a link to the image view for a large or unknown image."""
        cid = url_unquote(match.group(1))
        if cid in shown.images:
            content, mimetype = shown.images[cid]
            if len(content) <= DATA_URI_LIMIT:
                return _data_uri(content, mimetype)
        for stored_cid, attachment in self._inline_cache(obj):
            if stored_cid == cid and _is_image(attachment.mimetype):
                content_or_none = _read(attachment, DATA_URI_LIMIT)
                if content_or_none is not None:
                    return _data_uri(content_or_none, attachment.mimetype)
        return images_path + quote_cid(cid)

    def _inline_cache(self, obj: Email) -> list[tuple[str, Attachment]]:
        cached: list[tuple[str, Attachment]] | None = getattr(obj, "_po_inline", None)
        if cached is None:
            cached = inline_attachments(obj)
            obj._po_inline = cached  # type: ignore[attr-defined]
        return cached

    def image_view(self, request: HttpRequest, pk: int, content_id: str) -> HttpResponse:
        """One inline image of one email, to staff who may view emails (403 for other staff)."""
        obj = self._email_or_404(request, pk)
        for cid, attachment in inline_attachments(obj):
            if _cid_matches(cid, content_id) and _is_image(attachment.mimetype):
                content = _read(attachment)
                if content is None:
                    raise Http404(gettext("The image's file is missing from the storage."))
                return _image_response(content, attachment.mimetype)
        if renders_on_delivery(obj):
            for cid, (content, mimetype) in as_delivered(obj).images.items():
                if _cid_matches(cid, content_id):
                    return _image_response(content, mimetype)
        raise Http404(gettext("This email has no such inline image."))


def quote_cid(cid: str) -> str:
    """A Content-ID as a URL path segment."""
    return url_quote(cid, safe="@.-_")


def _image_response(content: bytes, mimetype: str) -> HttpResponse:
    response = HttpResponse(content, content_type=mimetype)
    # An SVG opened on its own must not run its scripts in the admin's origin.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
    _private(response)
    return response


def _private(response: HttpResponse) -> None:
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"


def _size(attachment: Attachment) -> str:
    name = attachment.file.name
    if not name:
        return gettext("missing")
    try:
        return str(filesizeformat(attachment.file.storage.size(name)))
    except FileNotFoundError:
        return gettext("missing")
    except Exception:  # noqa: BLE001 - a storage out of reach: the page still shows
        return gettext("unknown")


def _recipients(obj: Email) -> list[tuple[Any, list[tuple[str, str]]]]:
    """Each address field as (label, [(display name, address)]), the empty ones left out (but always "to")."""
    reply_to = next((value for name, value in (obj.headers or {}).items() if name.lower() == "reply-to"), "")
    fields = [
        (_("From"), [obj.from_email]),
        (_("To"), list(obj.to)),
        (_("Cc"), list(obj.cc)),
        (_("Bcc"), list(obj.bcc)),
        (_("Reply-To"), [reply_to] if reply_to else []),
    ]
    return [
        (label, [email.utils.parseaddr(str(address)) for address in addresses])
        for label, addresses in fields
        if addresses or label == fields[1][0]
    ]


def _fallback(obj: Email) -> str:
    """The translation used, when it is not the language asked for (a fallback); '' otherwise."""
    if not (obj.template_id or obj.template_file) or obj.template_language == obj.language:
        return ""
    return obj.template_language or gettext("the base template")


def next_attempt(obj: Email, now: datetime | None = None) -> str:
    """When the worker tries again: a time, "due now", or why never (expired, not queued)."""
    now = now or timezone.now()
    if obj.status == STATUS.sending:
        return gettext("being sent now")
    if obj.status not in CLAIMABLE:
        return ""
    if obj.expires_at is not None and obj.expires_at <= now:
        return gettext("never: it expired at %(time)s") % {"time": _local(obj.expires_at)}
    if obj.scheduled_time is None or obj.scheduled_time <= now:
        return gettext("due now")
    return _local(obj.scheduled_time)


def _local(moment: datetime) -> str:
    return str(date_format(timezone.localtime(moment), TIME_FORMAT))


def render_detail(model_admin: Any, request: HttpRequest, template: str, context: dict[str, Any]) -> TemplateResponse:
    """A page of this admin site (its header, sidebar and breadcrumbs) around ``context``."""
    request.current_app = model_admin.admin_site.name
    full = {**model_admin.admin_site.each_context(request), "opts": model_admin.opts, **context}
    return TemplateResponse(request, template, full)
