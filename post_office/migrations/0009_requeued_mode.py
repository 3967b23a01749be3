"""django-post_office's migration 0009_requeued_mode, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0008_attachment_headers")]

    operations = [
        migrations.AddField(
            model_name="email",
            name="number_of_retries",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="email",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
