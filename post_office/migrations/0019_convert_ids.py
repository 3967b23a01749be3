"""Conversion, step 5: 64-bit ids (django-post_office's are 32-bit); the sequences and every foreign key follow."""

from django.db import migrations, models

from . import _conversion


def big_id():
    return models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")


class Migration(migrations.Migration):
    dependencies = [("post_office", "0018_convert_emails")]

    operations = [
        _conversion.AlterFieldIfNeeded("emailtemplate", "id", big_id()),
        _conversion.AlterFieldIfNeeded("email", "id", big_id()),
        _conversion.AlterFieldIfNeeded("attachment", "id", big_id()),
        _conversion.AlterFieldIfNeeded("log", "id", big_id()),
    ]
