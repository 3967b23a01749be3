"""django-post_office's migration 0004_auto_20160607_0901, kept under its name (see _conversion.py)."""

from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [("post_office", "0003_longer_subject")]

    operations = [
        migrations.AlterField(
            model_name="email",
            name="template",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, to="post_office.emailtemplate"
            ),
        ),
        migrations.AlterField(
            model_name="emailtemplate",
            name="default_template",
            field=models.ForeignKey(
                default=None,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="translated_templates",
                to="post_office.emailtemplate",
            ),
        ),
    ]
