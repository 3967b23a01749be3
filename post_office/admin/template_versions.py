"""A template's history: its versions, a diff with the current text, restoring one in a click.

Versions are written by ``EmailTemplate.save()`` (every save that changes the
text keeps the text it replaces), so saves from code and imports have history
too; the admin only names who saved. Restoring is a POST (CSRF, change
permission) that saves the old text as the current one: the text it replaces
becomes a version itself, so a restore can be undone the same way.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from ..models import EmailTemplate, EmailTemplateVersion
from .template_preview import PREVIEW_MEDIA

#: The fields shown in a diff, in order, with their labels.
DIFF_FIELDS = (
    ("subject", _("subject")),
    ("content", _("content")),
    ("html_content", _("HTML content")),
    ("description", _("description")),
    ("name", _("name")),
)
#: The fields a restore puts back (a name or language is left as it is now: another template may have taken it).
RESTORED_FIELDS = ("subject", "content", "html_content", "description")
#: Lines of unchanged text shown around each change.
CONTEXT_LINES = 3
VERSIONS_PER_PAGE = 200


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff: 'equal', 'delete', 'insert', 'replace' or 'gap'."""

    kind: str
    old_number: int | None = None
    old_text: str = ""
    new_number: int | None = None
    new_text: str = ""


def side_by_side(old: str, new: str, context: int = CONTEXT_LINES) -> list[DiffRow]:
    """The changed lines of ``old`` -> ``new``, side by side, with ``context`` unchanged lines around each change."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    rows: list[DiffRow] = []
    for group_index, group in enumerate(matcher.get_grouped_opcodes(context)):
        if group_index:
            rows.append(DiffRow("gap"))
        for tag, i1, i2, j1, j2 in group:
            for offset in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + offset, j1 + offset
                has_old, has_new = i < i2, j < j2
                kind = tag if has_old and has_new else "delete" if has_old else "insert"
                rows.append(
                    DiffRow(
                        kind,
                        i + 1 if has_old else None,
                        old_lines[i] if has_old else "",
                        j + 1 if has_new else None,
                        new_lines[j] if has_new else "",
                    )
                )
    return rows


def when(version: EmailTemplateVersion) -> str:
    return formats.date_format(timezone.localtime(version.replaced_at), "DATETIME_FORMAT")


def field_diffs(version: EmailTemplateVersion, template: EmailTemplate) -> list[dict[str, Any]]:
    """Each field of the version next to the current text: whether it changed, and the rows of its diff."""
    diffs = []
    for name, label in DIFF_FIELDS:
        old, new = getattr(version, name) or "", getattr(template, name) or ""
        diffs.append({"name": name, "label": label, "changed": old != new, "rows": side_by_side(old, new)})
    return diffs


class TemplateVersionsMixin:
    """``<id>/versions/``, ``<id>/versions/<version id>/`` and ``.../restore/`` (id: a template or translation)."""

    admin_site: Any
    model: type[EmailTemplate]

    def _family_member(self, request: HttpRequest, object_id: str) -> tuple[EmailTemplate, EmailTemplate]:
        """The template or translation with this id and its base template, as the admin's queryset allows."""
        try:
            member = EmailTemplate.objects.filter(pk=object_id).first()
        except (TypeError, ValueError):
            member = None
        if member is None:
            raise Http404
        base = self.get_object(request, str(member.default_template_id or member.pk))  # type: ignore[attr-defined]
        if base is None:
            raise Http404
        if not self.has_view_or_change_permission(request, base):  # type: ignore[attr-defined]
            raise PermissionDenied
        return member, base

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:post_office_emailtemplate_{name}", args=args)

    def _versions_page(self, request: HttpRequest, page: str, base: EmailTemplate, **context: Any) -> HttpResponse:
        request.current_app = self.admin_site.name  # the admin's own {% url 'admin:...' %} links
        context.update(
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": base,
                "media": self.media + PREVIEW_MEDIA,  # type: ignore[attr-defined]
                "change_url": self._url("change", base.pk),
                "family": [
                    {"template": item, "url": self._url("versions", item.pk)}
                    for item in [base, *base.translated_templates.all()]
                ],
            }
        )
        return TemplateResponse(request, f"admin/post_office/emailtemplate/{page}.html", context)

    def versions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        member, base = self._family_member(request, object_id)
        versions = list(member.versions.all()[:VERSIONS_PER_PAGE])
        rows = [{"version": version, "url": self._url("version", member.pk, version.pk)} for version in versions]
        title = gettext("History of versions: %(template)s") % {"template": member}
        return self._versions_page(request, "versions", base, member=member, rows=rows, title=title)

    def version_view(self, request: HttpRequest, object_id: str, version_id: str) -> HttpResponse:
        member, base = self._family_member(request, object_id)
        version = get_object_or_404(EmailTemplateVersion, pk=version_id, template=member)
        title = gettext("Version of %(template)s replaced at %(date)s") % {
            "template": member,
            "date": when(version),
        }
        return self._versions_page(
            request,
            "version",
            base,
            member=member,
            version=version,
            diffs=field_diffs(version, member),
            versions_url=self._url("versions", member.pk),
            restore_url=self._url("restore_version", member.pk, version.pk),
            can_restore=self.has_change_permission(request, base),  # type: ignore[attr-defined]
            title=title,
        )

    def restore_version_view(self, request: HttpRequest, object_id: str, version_id: str) -> HttpResponse:
        return require_POST(self._restore)(request, object_id, version_id)

    def _restore(self, request: HttpRequest, object_id: str, version_id: str) -> HttpResponse:
        member, base = self._family_member(request, object_id)
        if not self.has_change_permission(request, base):  # type: ignore[attr-defined]
            raise PermissionDenied
        version = get_object_or_404(EmailTemplateVersion, pk=version_id, template=member)
        for name in RESTORED_FIELDS:
            if name == "description" and member.default_template_id is not None:
                continue  # a translation's description is not edited anywhere
            setattr(member, name, getattr(version, name))
        member.saved_by = request.user.get_username()  # type: ignore[union-attr]
        member.save()
        message = gettext("Restored the version replaced at %(date)s of %(template)s.") % {
            "date": when(version),
            "template": member,
        }
        self.log_change(request, base, message)  # type: ignore[attr-defined]
        messages.success(request, message)
        return HttpResponseRedirect(self._url("change", base.pk))
