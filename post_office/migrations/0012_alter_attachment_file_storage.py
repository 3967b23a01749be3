"""django-post_office's migration 0012_alter_attachment_file_storage, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0011_models_help_text")]

    operations = []
