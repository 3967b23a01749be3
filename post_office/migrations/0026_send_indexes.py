"""Indexes an INSERT of queued mail no longer writes (benchmarks/RESULTS.md, "A cheaper mail.send").

The lease index holds only the emails being sent and the scheduled_time index
only scheduled ones (partial where the database has partial indexes);
message_id keeps one plain index. message_id's change is done on the indexes
alone: an AlterField would make SQLite rebuild the table, and a rebuilt table's
id counter restarts after the highest id left (deleted ids handed out again).
"""

import copy

from django.db import migrations, models

import post_office.indexes

MESSAGE_ID_INDEX = models.Index(fields=["message_id"], name="post_office_email_message_id")


def _message_id_indexes(schema_editor, model) -> list[str]:
    """The indexes on message_id alone but ours (the field's db_index made one, on PostgreSQL two)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [
        name
        for name, details in constraints.items()
        if details["index"]
        and not details["unique"]
        and not details["primary_key"]
        and details["columns"] == ["message_id"]
        and name != MESSAGE_ID_INDEX.name
    ]


def one_message_id_index(apps, schema_editor) -> None:
    model = apps.get_model("post_office", "Email")
    for name in _message_id_indexes(schema_editor, model):
        schema_editor.execute(schema_editor._delete_index_sql(model, name))
    schema_editor.add_index(model, MESSAGE_ID_INDEX)


def field_message_id_index(apps, schema_editor) -> None:
    model = apps.get_model("post_office", "Email")
    schema_editor.remove_index(model, MESSAGE_ID_INDEX)
    field = copy.copy(model._meta.get_field("message_id"))
    field.db_index = True  # the index (indexes, on PostgreSQL) the field's db_index made
    for statement in schema_editor._field_indexes_sql(model, field):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("post_office", "0025_expiry_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="email",
            name="post_office_email_lease",
        ),
        migrations.RemoveIndex(
            model_name="email",
            name="post_office_email_scheduled",
        ),
        migrations.AddIndex(
            model_name="email",
            index=post_office.indexes.LeaseIndex(fields=["lease_expires_at"], name="post_office_email_lease"),
        ),
        migrations.AddIndex(
            model_name="email",
            index=post_office.indexes.PresentIndex(fields=["scheduled_time"], name="post_office_email_scheduled"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="email",
                    name="message_id",
                    field=models.CharField(blank=True, max_length=255, null=True, verbose_name="Message-ID"),
                ),
                migrations.AddIndex(model_name="email", index=MESSAGE_ID_INDEX),
            ],
            database_operations=[migrations.RunPython(one_message_id_index, field_message_id_index)],
        ),
    ]
