"""django-post_office's migration 0008_attachment_headers, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0007_auto_20170731_1342")]

    operations = [
        migrations.AddField(
            model_name="attachment",
            name="headers",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
