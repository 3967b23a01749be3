"""Attachments, served only through a permission-checked download view."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import FileResponse, Http404, HttpRequest
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import Attachment, Email


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Attachments are served only through :meth:`download`, never by the storage's URL.

    Files are added by queueing mail (content-addressed, under random names),
    not uploaded here.
    """

    list_display = ("name", "mimetype", "download", "created", "last_used")
    search_fields = ("name",)
    raw_id_fields = ("emails",)
    fields = ("name", "mimetype", "headers", "emails", "download", "content_hash", "created", "last_used")
    readonly_fields = ("download", "content_hash", "created", "last_used")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="{}_{}_download".format(*info),
        )
        return [download, *super().get_urls()]

    @admin.display(description=_("file"))
    def download(self, obj: Attachment) -> str:
        return download_link(self.admin_site, obj) if obj.pk is not None else ""

    def download_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        """The file, as a download, to staff who may view attachments or emails (403 for other staff)."""
        if not (self.has_view_permission(request) or _may_view(request, Email)):
            raise PermissionDenied
        attachment = self.get_object(request, unquote(object_id))
        if attachment is None or not attachment.file.name:
            raise Http404(_("No such attachment."))
        try:
            handle = attachment.file.storage.open(attachment.file.name, "rb")
        except FileNotFoundError:
            raise Http404(_("The attachment's file is missing from the storage.")) from None
        # Never rendered by the browser, whatever the stored type says: a download, not sniffed.
        response = FileResponse(
            handle, as_attachment=True, filename=attachment.name, content_type="application/octet-stream"
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox"
        response["Cache-Control"] = "private, no-store"
        return response


def download_link(site: admin.AdminSite, attachment: Attachment) -> str:
    """A link to an attachment's download view (just its name when the site has no Attachment admin)."""
    try:
        url = reverse(f"{site.name}:post_office_attachment_download", args=[quote(attachment.pk)])
    except NoReverseMatch:
        return format_html("{}", attachment.name)
    return format_html('<a href="{}">{}</a>', url, attachment.name)


def _may_view(request: HttpRequest, model: type[Model]) -> bool:
    """The view (or change) permission on ``model``, as ModelAdmin.has_view_permission reads it."""
    opts = model._meta
    return any(
        request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )
