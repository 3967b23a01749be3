"""django-post_office's migration 0003_longer_subject, kept under its name (see _conversion.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("post_office", "0002_add_i18n_and_backend_alias")]

    operations = [
        migrations.AlterField(
            model_name="email",
            name="subject",
            field=models.CharField(blank=True, max_length=989),
        ),
    ]
