"""django-post_office's migration 0014_alter_email_recipient_delivery_status_and_more, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0013_email_recipient_delivery_status_alter_log_status")]

    operations = []
