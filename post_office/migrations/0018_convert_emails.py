"""Conversion, step 4: the email table's new columns (claims, languages, alternatives) and its NULLs filled."""

import django.db.models.deletion
from django.db import migrations, models

from . import _conversion

STATUS_CHOICES = [(0, "sent"), (1, "failed"), (2, "queued"), (3, "requeued"), (4, "sending"), (5, "cancelled")]
PRIORITY_CHOICES = [(0, "low"), (1, "medium"), (2, "high"), (3, "now")]
DELIVERY_CHOICES = [
    (10, "Accepted"),
    (20, "Delivered"),
    (30, "Opened"),
    (40, "Clicked"),
    (50, "Deferred"),
    (60, "Soft Bounced"),
    (65, "Undetermined Bounced"),
    (70, "Hard Bounced"),
    (80, "Spam Complaint"),
    (90, "Unsubscribed"),
]


class Migration(migrations.Migration):
    dependencies = [("post_office", "0017_convert_recipients_swap")]

    operations = [
        migrations.RunPython(_conversion.fill_email_defaults, _conversion.noop),
        migrations.AlterModelOptions(name="email", options={"verbose_name": "email", "verbose_name_plural": "emails"}),
        _conversion.AddFieldIfNeeded(
            "email", "alternatives", models.JSONField(blank=True, default=list, verbose_name="other alternatives")
        ),
        _conversion.AddFieldIfNeeded(
            "email", "claimed_by", models.CharField(blank=True, default="", max_length=100, verbose_name="claimed by")
        ),
        _conversion.AddFieldIfNeeded(
            "email", "language", models.CharField(blank=True, default="", max_length=12, verbose_name="language")
        ),
        _conversion.AddFieldIfNeeded(
            "email", "lease_expires_at", models.DateTimeField(blank=True, null=True, verbose_name="lease expires at")
        ),
        _conversion.AddFieldIfNeeded(
            "email",
            "pending_recipients",
            models.JSONField(
                blank=True,
                editable=False,
                help_text="Set after a partial delivery: the next attempt goes only to these (empty: to every recipient).",
                null=True,
                verbose_name="recipients still to deliver to",
            ),
        ),
        _conversion.AddFieldIfNeeded(
            "email",
            "template_file",
            models.CharField(
                blank=True,
                default="",
                help_text="File template (file:...) this email is rendered from at delivery.",
                max_length=255,
                verbose_name="file template",
            ),
        ),
        _conversion.AddFieldIfNeeded(
            "email",
            "template_language",
            models.CharField(
                blank=True,
                default="",
                help_text="Language of the translation used; empty for the base template.",
                max_length=12,
                verbose_name="template language",
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "backend_alias", models.CharField(blank=True, default="", max_length=64, verbose_name="backend alias")
        ),
        _conversion.AlterFieldIfNeeded("email", "context", models.JSONField(blank=True, null=True, verbose_name="context")),
        _conversion.AlterFieldIfNeeded(
            "email", "created", models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="created")
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "expires_at", models.DateTimeField(blank=True, null=True, verbose_name="expires at")
        ),
        _conversion.AlterFieldIfNeeded("email", "from_email", models.CharField(max_length=320, verbose_name="from")),
        _conversion.AlterFieldIfNeeded("email", "headers", models.JSONField(blank=True, null=True, verbose_name="headers")),
        _conversion.AlterFieldIfNeeded(
            "email", "html_message", models.TextField(blank=True, verbose_name="HTML message")
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "last_updated", models.DateTimeField(auto_now=True, verbose_name="last updated")
        ),
        _conversion.AlterFieldIfNeeded("email", "message", models.TextField(blank=True, verbose_name="message")),
        _conversion.AlterFieldIfNeeded(
            "email",
            "message_id",
            models.CharField(blank=True, db_index=True, max_length=255, null=True, verbose_name="Message-ID"),
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "number_of_retries", models.PositiveIntegerField(default=0, verbose_name="number of retries")
        ),
        _conversion.AlterFieldIfNeeded(
            "email",
            "priority",
            models.PositiveSmallIntegerField(choices=PRIORITY_CHOICES, default=1, verbose_name="priority"),
        ),
        _conversion.AlterFieldIfNeeded(
            "email",
            "recipient_delivery_status",
            models.PositiveSmallIntegerField(
                blank=True, choices=DELIVERY_CHOICES, null=True, verbose_name="recipient delivery status"
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "scheduled_time", models.DateTimeField(blank=True, null=True, verbose_name="scheduled time")
        ),
        _conversion.AlterFieldIfNeeded(
            "email",
            "status",
            models.PositiveSmallIntegerField(choices=STATUS_CHOICES, default=2, verbose_name="status"),
        ),
        _conversion.AlterFieldIfNeeded(
            "email", "subject", models.CharField(blank=True, max_length=989, verbose_name="subject")
        ),
        _conversion.AlterFieldIfNeeded(
            "email",
            "template",
            models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="emails",
                to="post_office.emailtemplate",
                verbose_name="template",
            ),
        ),
        migrations.RunPython(_conversion.fill_languages, _conversion.noop),
    ]
