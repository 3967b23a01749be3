"""django-post_office's migration 0005_auto_20170515_0013, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0004_auto_20160607_0901")]

    operations = [
        migrations.AlterUniqueTogether(
            name="emailtemplate", unique_together={("name", "language", "default_template")}
        ),
    ]
