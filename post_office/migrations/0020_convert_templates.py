"""Conversion, step 6: templates get this app's rules (one name per language) and their version history."""

import django.db.models.deletion
from django.db import migrations, models

from . import _conversion


class Migration(migrations.Migration):
    dependencies = [("post_office", "0019_convert_ids")]

    operations = [
        migrations.AlterModelOptions(
            name="emailtemplate",
            options={
                "ordering": ["name", "language"],
                "verbose_name": "email template",
                "verbose_name_plural": "email templates",
            },
        ),
        _conversion.DropUniqueTogetherIfNeeded("emailtemplate"),
        _conversion.AlterFieldIfNeeded("emailtemplate", "content", models.TextField(blank=True, verbose_name="content")),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate", "created", models.DateTimeField(auto_now_add=True, verbose_name="created")
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate",
            "default_template",
            models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="translated_templates",
                to="post_office.emailtemplate",
                verbose_name="default template",
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate",
            "description",
            models.TextField(blank=True, help_text="What this template is for", verbose_name="description"),
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate", "html_content", models.TextField(blank=True, verbose_name="HTML content")
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate",
            "language",
            models.CharField(
                blank=True,
                default="",
                help_text="Empty for the base template; a language code for a translation.",
                max_length=12,
                verbose_name="language",
            ),
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate", "last_updated", models.DateTimeField(auto_now=True, verbose_name="last updated")
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate",
            "name",
            models.CharField(help_text="e.g. 'welcome_email'", max_length=255, verbose_name="name"),
        ),
        _conversion.AlterFieldIfNeeded(
            "emailtemplate", "subject", models.CharField(blank=True, max_length=255, verbose_name="subject")
        ),
        _conversion.AddConstraintIfNeeded(
            model_name="emailtemplate",
            constraint=models.UniqueConstraint(fields=("name", "language"), name="post_office_template_name_language"),
        ),
        _conversion.AddConstraintIfNeeded(
            model_name="emailtemplate",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("default_template__isnull", True), ("language", "")),
                    models.Q(("default_template__isnull", False), models.Q(("language", ""), _negated=True)),
                    _connector="OR",
                ),
                name="post_office_template_base_has_no_language",
            ),
        ),
        _conversion.CreateModelIfNeeded(
            name="EmailTemplateVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("replaced_at", models.DateTimeField(db_index=True, verbose_name="replaced at")),
                ("replaced_by", models.CharField(blank=True, default="", max_length=150, verbose_name="replaced by")),
                ("name", models.CharField(max_length=255, verbose_name="name")),
                ("description", models.TextField(blank=True, verbose_name="description")),
                ("subject", models.CharField(blank=True, max_length=255, verbose_name="subject")),
                ("content", models.TextField(blank=True, verbose_name="content")),
                ("html_content", models.TextField(blank=True, verbose_name="HTML content")),
                ("language", models.CharField(blank=True, default="", max_length=12, verbose_name="language")),
                (
                    "template",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="versions",
                        to="post_office.emailtemplate",
                        verbose_name="template",
                    ),
                ),
            ],
            options={
                "verbose_name": "template version",
                "verbose_name_plural": "template versions",
                "ordering": ["-replaced_at", "-id"],
            },
        ),
    ]
