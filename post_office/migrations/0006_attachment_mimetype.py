"""django-post_office's migration 0006_attachment_mimetype, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0005_auto_20170515_0013")]

    operations = [
        migrations.AddField(
            model_name="attachment",
            name="mimetype",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
    ]
