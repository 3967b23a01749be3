"""Conversion, step 7: attachments get their content hash and dates, logs their worker column."""

import django.db.models.deletion
import django.utils.timezone
import post_office.models
from django.db import migrations, models

from . import _conversion

LOG_STATUS_CHOICES = [
    (0, "sent"),
    (1, "failed"),
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
    dependencies = [("post_office", "0020_convert_templates")]

    operations = [
        migrations.AlterModelOptions(
            name="attachment", options={"verbose_name": "attachment", "verbose_name_plural": "attachments"}
        ),
        _conversion.AddFieldIfNeeded(
            "attachment",
            "content_hash",
            models.CharField(
                db_index=True, default="", editable=False, max_length=64, verbose_name="SHA-256 of the content"
            ),
            preserve_default=False,
        ),
        _conversion.AddFieldIfNeeded(
            "attachment",
            "created",
            models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now, verbose_name="created"),
            preserve_default=False,
        ),
        _conversion.AddFieldIfNeeded(
            "attachment",
            "last_used",
            models.DateTimeField(
                db_index=True, default=django.utils.timezone.now, editable=False, verbose_name="last used"
            ),
        ),
        migrations.RunPython(_conversion.fill_attachments, _conversion.noop),
        _conversion.AlterFieldIfNeeded(
            "attachment",
            "emails",
            models.ManyToManyField(related_name="attachments", to="post_office.email", verbose_name="emails"),
        ),
        _conversion.AlterFieldIfNeeded(
            "attachment",
            "file",
            models.FileField(
                storage=post_office.models.get_attachment_storage,
                upload_to="post_office_attachments",
                verbose_name="file",
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "attachment", "headers", models.JSONField(blank=True, null=True, verbose_name="headers")
        ),
        _conversion.AlterFieldIfNeeded(
            "attachment",
            "mimetype",
            models.CharField(blank=True, default="", max_length=255, verbose_name="MIME type"),
        ),
        _conversion.AlterFieldIfNeeded(
            "attachment",
            "name",
            models.CharField(help_text="The original filename", max_length=255, verbose_name="name"),
        ),
        migrations.AlterModelOptions(
            name="log", options={"ordering": ["-date"], "verbose_name": "log", "verbose_name_plural": "logs"}
        ),
        _conversion.AddFieldIfNeeded(
            "log",
            "worker",
            models.CharField(blank=True, db_default="", default="", max_length=100, verbose_name="worker"),
        ),
        _conversion.AlterFieldIfNeeded(
            "log", "date", models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="date")
        ),
        _conversion.AlterFieldIfNeeded(
            "log",
            "email",
            models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="logs",
                to="post_office.email",
                verbose_name="email",
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "log", "exception_type", models.CharField(blank=True, max_length=255, verbose_name="exception type")
        ),
        _conversion.AlterFieldIfNeeded("log", "message", models.TextField(blank=True, verbose_name="message")),
        _conversion.AlterFieldIfNeeded(
            "log", "status", models.PositiveSmallIntegerField(choices=LOG_STATUS_CHOICES, verbose_name="status")
        ),
    ]
