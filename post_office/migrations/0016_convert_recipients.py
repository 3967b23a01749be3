"""Conversion, step 2: to/cc/bcc as JSON lists of whole addresses, copied beside the old text columns."""

from django.db import migrations, models

from . import _conversion


class Migration(migrations.Migration):
    dependencies = [("post_office", "0015_convert_preflight")]

    operations = [
        _conversion.AddFieldIfNeeded("email", "to_list", models.JSONField(null=True, blank=True)),
        _conversion.AddFieldIfNeeded("email", "cc_list", models.JSONField(null=True, blank=True)),
        _conversion.AddFieldIfNeeded("email", "bcc_list", models.JSONField(null=True, blank=True)),
        migrations.RunPython(_conversion.fill_recipients, _conversion.unfill_recipients),
    ]
