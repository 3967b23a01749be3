"""django-post_office's migration 0010_message_id, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0009_requeued_mode")]

    operations = [
        migrations.AddField(
            model_name="email",
            name="message_id",
            field=models.CharField(editable=False, max_length=255, null=True),
        ),
    ]
