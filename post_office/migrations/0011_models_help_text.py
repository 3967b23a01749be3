"""django-post_office's migration 0011_models_help_text, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0010_message_id")]

    operations = []
