"""Conversion, step 3: the JSON lists (filled in step 2) replace the comma-separated text columns."""

from django.db import migrations

import post_office.fields

from . import _conversion


class Migration(migrations.Migration):
    dependencies = [("post_office", "0016_convert_recipients")]

    operations = [
        _conversion.RemoveFieldIfNeeded("email", "to", replaced_by="to_list"),
        _conversion.RemoveFieldIfNeeded("email", "cc", replaced_by="cc_list"),
        _conversion.RemoveFieldIfNeeded("email", "bcc", replaced_by="bcc_list"),
        _conversion.RenameFieldIfNeeded("email", "to_list", "to"),
        _conversion.RenameFieldIfNeeded("email", "cc_list", "cc"),
        _conversion.RenameFieldIfNeeded("email", "bcc_list", "bcc"),
        _conversion.AlterFieldIfNeeded("email", "to", post_office.fields.AddressListField(blank=True, default=list, verbose_name="to")),
        _conversion.AlterFieldIfNeeded("email", "cc", post_office.fields.AddressListField(blank=True, default=list, verbose_name="cc")),
        _conversion.AlterFieldIfNeeded(
            "email", "bcc", post_office.fields.AddressListField(blank=True, default=list, verbose_name="bcc")
        ),
    ]
