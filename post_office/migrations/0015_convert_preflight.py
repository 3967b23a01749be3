"""Conversion from django-post_office, step 1: refuse what cannot be converted, before changing anything."""

from django.db import migrations

from . import _conversion


class Migration(migrations.Migration):
    dependencies = [("post_office", "0014_alter_email_recipient_delivery_status_and_more")]

    operations = [migrations.RunPython(_conversion.preflight, _conversion.noop, elidable=False)]
