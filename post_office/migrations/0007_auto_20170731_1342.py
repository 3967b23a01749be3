"""django-post_office's migration 0007_auto_20170731_1342, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0006_attachment_mimetype")]

    operations = []
