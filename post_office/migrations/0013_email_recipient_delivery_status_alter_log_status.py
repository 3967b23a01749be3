"""django-post_office's migration 0013_email_recipient_delivery_status_alter_log_status, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0012_alter_attachment_file_storage")]

    operations = [
        migrations.AddField(
            model_name="email",
            name="recipient_delivery_status",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
    ]
