"""django-post_office's migration 0002_add_i18n_and_backend_alias, kept under its name (see _conversion.py)."""

from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [("post_office", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="email",
            name="backend_alias",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="emailtemplate",
            name="default_template",
            field=models.ForeignKey(
                default=None,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="translated_templates",
                to="post_office.emailtemplate",
            ),
        ),
        migrations.AddField(
            model_name="emailtemplate",
            name="language",
            field=models.CharField(blank=True, default="", max_length=12),
        ),
        migrations.AlterUniqueTogether(name="emailtemplate", unique_together={("language", "default_template")}),
    ]
