"""django-post_office's migration 0001_initial, kept under its name (see _conversion.py)."""

from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Attachment",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("file", models.FileField(upload_to="post_office_attachments")),
                ("name", models.CharField(max_length=255)),
            ],
        ),
        migrations.CreateModel(
            name="Email",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("from_email", models.CharField(max_length=254)),
                ("to", models.TextField(blank=True)),
                ("cc", models.TextField(blank=True)),
                ("bcc", models.TextField(blank=True)),
                ("subject", models.CharField(blank=True, max_length=255)),
                ("message", models.TextField(blank=True)),
                ("html_message", models.TextField(blank=True)),
                ("status", models.PositiveSmallIntegerField(blank=True, db_index=True, null=True)),
                ("priority", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("created", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("last_updated", models.DateTimeField(auto_now=True, db_index=True)),
                ("scheduled_time", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("headers", models.JSONField(blank=True, null=True)),
                ("context", models.JSONField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="EmailTemplate",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=255)),
                ("description", models.TextField(blank=True)),
                ("subject", models.CharField(blank=True, max_length=255)),
                ("content", models.TextField(blank=True)),
                ("html_content", models.TextField(blank=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("last_updated", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name="Log",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("date", models.DateTimeField(auto_now_add=True)),
                ("status", models.PositiveSmallIntegerField()),
                ("exception_type", models.CharField(blank=True, max_length=255)),
                ("message", models.TextField()),
                (
                    "email",
                    models.ForeignKey(
                        editable=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="logs",
                        to="post_office.email",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="email",
            name="template",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="post_office.emailtemplate"
            ),
        ),
        migrations.AddField(
            model_name="attachment",
            name="emails",
            field=models.ManyToManyField(related_name="attachments", to="post_office.email"),
        ),
    ]
