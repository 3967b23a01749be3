"""The do-not-send list: addresses no email goes to, added by hand, imported, or fed by bounces later."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ..models import DoNotSendEntry


class DoNotSendEntryForm(forms.ModelForm):
    class Meta:
        model = DoNotSendEntry
        fields = ("address", "reason", "created", "note")
        help_texts = {
            "address": _("An email address, e.g. bob@example.com; case does not matter."),
            "created": _("When the address was put on the list."),
        }


@admin.register(DoNotSendEntry)
class DoNotSendEntryAdmin(admin.ModelAdmin):
    """Edit the list; the model checks each address and keeps it in lower case (so the unique check ignores case)."""

    form = DoNotSendEntryForm
    list_display = ("address", "reason", "created", "note")
    list_filter = ("reason", "created")
    search_fields = ("address", "note")
    date_hierarchy = "created"
    ordering = ("-created", "-id")
