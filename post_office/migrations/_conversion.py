"""The conversion of a django-post_office database, shared by migrations 0015-0022.

Our migration history begins with django-post_office's own fourteen migrations, under their names
(0001_initial ... 0014_alter_email_recipient_delivery_status_and_more), reproduced as the schema they
produce. So:

* on a database django-post_office created, those are already recorded as applied, and plain
  ``migrate`` runs only 0015 onwards, which convert its tables in place: the rows keep their ids
  and dates, and the foreign keys a project's own tables hold to them stay valid;
* a project's migrations that depend on ``("post_office", "0011_models_help_text")`` (or any of
  its names) find that node, on a converted database and on a fresh one;
* a fresh database goes through the same path, so there is one schema and one conversion to test.

The conversion is written for the three databases' traps:

* MariaDB/MySQL cannot roll back a schema change. Every step only adds before it removes (the new
  recipients columns are filled before the old ones are dropped), every data step is idempotent,
  and every schema step checks what the database already holds (the ``...IfNeeded`` operations
  below), so a ``migrate`` that stopped halfway, for any reason, is finished by running it again,
  with nothing lost.
* SQLite rebuilds a table for most changes; Django copies the rows with their ids, but the
  rebuilt table's AUTOINCREMENT counter restarts at the highest id left, so ids of deleted rows
  would be handed out again. 0015 saves the counters and 0022 puts them back.
* PostgreSQL keeps its sequences through the in-place changes (the id columns become bigint with
  their sequences); nothing is copied, so nothing has to be moved.

Nothing here imports the app's models or settings: a migration must keep working as the app
changes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import migrations, models

BATCH = 2000
SEQUENCE_BACKUP_TABLE = "post_office_conversion_sequences"
TABLES = ("post_office_email", "post_office_emailtemplate", "post_office_attachment", "post_office_log")


# --- reading the database as it is -------------------------------------------------------------


def _columns(schema_editor, table: str) -> set[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return set()
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def _constraints(schema_editor, table: str) -> dict[str, dict[str, Any]]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def _has_index_on(schema_editor, table: str, column: str) -> bool:
    return any(
        info["index"] and not info["unique"] and not info["primary_key"] and info["columns"] == [column]
        for info in _constraints(schema_editor, table).values()
    )


# --- schema operations that look before they act (see the module's docstring) -------------------


def _flush_deferred(schema_editor) -> None:
    """Run now the SQL Django holds back until the migration's end (indexes, foreign keys).

    On MariaDB a ``migrate`` killed before that end would leave the column or table without them,
    and a second run, finding the column or table there, would skip the step. (:class:`RepairSchema`
    at the end of the conversion finds anything still missing.)
    """
    while schema_editor.deferred_sql:
        schema_editor.execute(schema_editor.deferred_sql.pop(0))


class _Flushing:
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        super().database_forwards(app_label, schema_editor, from_state, to_state)
        _flush_deferred(schema_editor)


class AddFieldIfNeeded(_Flushing, migrations.AddField):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if model._meta.get_field(self.name).column not in _columns(schema_editor, model._meta.db_table):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class RemoveFieldIfNeeded(migrations.RemoveField):
    """Drop a column if it is there and, when ``replaced_by`` is given, only while that column is there too.

    ``replaced_by`` guards a column whose name a later step gives to its replacement: once
    ``to_list`` has been renamed ``to``, the ``to`` found on a second run is the new one, to keep.
    """

    def __init__(self, model_name: str, name: str, replaced_by: str | None = None) -> None:
        super().__init__(model_name, name)
        self.replaced_by = replaced_by

    def deconstruct(self):
        name, args, kwargs = super().deconstruct()
        if self.replaced_by:
            kwargs["replaced_by"] = self.replaced_by
        return name, args, kwargs

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        columns = _columns(schema_editor, model._meta.db_table)
        if self.replaced_by and self.replaced_by not in columns:
            return
        if model._meta.get_field(self.name).column in columns:
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class RenameFieldIfNeeded(migrations.RenameField):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        columns = _columns(schema_editor, model._meta.db_table)
        if self.old_name in columns and self.new_name not in columns:
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AlterFieldIfNeeded(migrations.AlterField):
    """AlterField that takes the column's index as the database has it, not as the old state says.

    Changing a column's type or nullability again is harmless; creating an index that is already
    there is not, nor is dropping one that is gone.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        to_model = to_state.apps.get_model(app_label, self.model_name)
        from_model = from_state.apps.get_model(app_label, self.model_name)
        old_field = from_model._meta.get_field(self.name)
        new_field = to_model._meta.get_field(self.name)
        table = from_model._meta.db_table
        if not old_field.primary_key and not old_field.unique and not old_field.remote_field:
            indexed = _has_index_on(schema_editor, table, old_field.column)
            if indexed != old_field.db_index:
                old_field = old_field.clone()
                old_field.db_index = indexed
                old_field.set_attributes_from_name(self.name)
                old_field.model = from_model
        schema_editor.alter_field(from_model, old_field, new_field)
        _flush_deferred(schema_editor)


class CreateModelIfNeeded(_Flushing, migrations.CreateModel):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.name)
        if not _columns(schema_editor, model._meta.db_table):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddIndexIfNeeded(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.index.name not in _constraints(schema_editor, model._meta.db_table):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddConstraintIfNeeded(migrations.AddConstraint):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.constraint.name not in _constraints(schema_editor, model._meta.db_table):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class DropUniqueTogetherIfNeeded(migrations.AlterUniqueTogether):
    """Drop django-post_office's unique (name, language, default_template), if it is still there."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, unique_together=set())

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.name)
        columns = {model._meta.get_field(name).column for name in ("name", "language", "default_template")}
        present = any(
            info["unique"] and not info["primary_key"] and set(info["columns"]) == columns
            for info in _constraints(schema_editor, model._meta.db_table).values()
        )
        if present:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        super().database_forwards(app_label, schema_editor, from_state, to_state)


class AlignOldColumns(migrations.operations.base.Operation):
    """Bring columns that django-post_office's history left behind to the types and checks a fresh install has.

    Its releases up to 3.5 stored JSON in text columns (the ``jsonfield`` package), and later ones
    rewrote their first migration instead of converting them, so a database born then still has
    text ``headers`` and ``context`` columns (PostgreSQL cannot query them as JSON) and, on
    MariaDB, no JSON or sign checks. The attachments' link table keeps 32-bit ids. Each change is
    made only where the database differs, so running it again changes nothing.
    """

    reversible = True
    reduces_to_sql = False

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        connection = schema_editor.connection
        introspection = connection.introspection
        for model in to_state.apps.get_app_config(app_label).get_models(include_auto_created=True):
            if model._meta.proxy or not model._meta.managed:
                continue
            table = model._meta.db_table
            with connection.cursor() as cursor:
                if table not in introspection.table_names(cursor):
                    continue
                description = {col.name: col for col in introspection.get_table_description(cursor, table)}
            checks = [info["columns"] for info in _constraints(schema_editor, table).values() if info["check"]]
            for field in model._meta.local_fields:
                column = description.get(field.column)
                if column is None:
                    continue
                found = introspection.get_field_type(column.type_code, column)
                if field.get_internal_type() == "JSONField" and found == "TextField":
                    old = models.TextField(null=field.null, blank=True)
                    old.set_attributes_from_name(field.name)
                    old.model = model
                    if connection.vendor == "postgresql":
                        schema_editor.execute(
                            f"UPDATE {schema_editor.quote_name(table)} SET {schema_editor.quote_name(field.column)} "
                            f"= NULL WHERE {schema_editor.quote_name(field.column)} = ''"  # noqa: S608
                        )
                    schema_editor.alter_field(model, old, field)
                    continue
                if field.primary_key and field.get_internal_type() == "BigAutoField" and found == "AutoField":
                    old = models.AutoField(primary_key=True, serialize=False, auto_created=True)
                    old.set_attributes_from_name(field.name)
                    old.model = model
                    schema_editor.alter_field(model, old, field)
                    continue
                check = field.db_check(connection)
                if check and connection.vendor == "mysql" and not any(field.column in columns for columns in checks):
                    name = schema_editor._create_index_name(table, [field.column], suffix="_check")
                    schema_editor.execute(schema_editor._create_check_sql(model, name, check))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass  # django-post_office reads the aligned columns as they are

    def describe(self):
        return "Align columns left behind by django-post_office's older releases"


class RepairSchema(migrations.operations.base.Operation):
    """Create the indexes, foreign keys and named indexes/constraints the models expect and the database lacks.

    A ``migrate`` killed on MariaDB between a change and the SQL that completes it (a foreign key
    dropped to change a column and not yet re-added, say) leaves a step that a second run does not
    redo. This last step looks at every table of the app and adds what is missing, so a resumed
    conversion ends with the schema a fresh install has. It changes nothing where nothing is missing.
    """

    reversible = True
    reduces_to_sql = False

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        connection = schema_editor.connection
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
        for model in to_state.apps.get_app_config(app_label).get_models(include_auto_created=True):
            if model._meta.proxy or not model._meta.managed or model._meta.db_table not in tables:
                continue
            self._repair(schema_editor, model)

    def _repair(self, schema_editor, model) -> None:
        table = model._meta.db_table
        found = _constraints(schema_editor, table)
        for field in model._meta.local_fields:
            # As Django decides it (MySQL/MariaDB index a foreign key through the key itself).
            if schema_editor._field_should_be_indexed(model, field):
                if not any(
                    info["index"] and not info["unique"] and info["columns"] == [field.column] for info in found.values()
                ):
                    schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))
        for field in model._meta.local_fields:
            if field.remote_field and field.db_constraint and schema_editor.connection.features.supports_foreign_keys:
                if not any(info["foreign_key"] and info["columns"] == [field.column] for info in found.values()):
                    schema_editor.execute(schema_editor._create_fk_sql(model, field, "_fk_%(to_table)s_%(to_column)s"))
        for index in model._meta.indexes:
            if index.name not in found:
                schema_editor.add_index(model, index)
        for constraint in model._meta.constraints:
            if constraint.name not in found:
                schema_editor.add_constraint(model, constraint)
        for fields in model._meta.unique_together:
            columns = [model._meta.get_field(name).column for name in fields]
            if not any(info["unique"] and info["columns"] == columns for info in found.values()):
                schema_editor.execute(schema_editor._create_unique_sql(model, [model._meta.get_field(n) for n in fields]))
        _flush_deferred(schema_editor)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return "Create the indexes and keys a stopped migrate left out"


# --- data steps ---


def _settle(schema_editor) -> None:
    """PostgreSQL: check the foreign keys of the rows just updated now, not at commit.

    A schema change after a data step in the same migration is refused while such checks are
    pending ("pending trigger events").
    """
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class ConversionRefused(Exception):
    """The data breaks a rule of this app that cannot be fixed without a person's decision."""


def preflight(apps, schema_editor) -> None:
    """Refuse, before anything is changed, what the converted schema could not hold."""
    Template = apps.get_model("post_office", "EmailTemplate")
    db = schema_editor.connection.alias
    problems = []
    seen: dict[tuple[str, str], int] = {}
    rows = Template.objects.using(db).order_by("id").values_list("id", "name", "language", "default_template_id")
    for pk, name, language, parent in rows:
        if parent is None and language:
            problems.append(f"template #{pk} {name!r} has language {language!r} but is not a translation")
        if parent is not None and not language:
            problems.append(f"template #{pk} {name!r} is a translation of #{parent} without a language")
        key = (name, language or "")
        if key in seen:
            problems.append(f"templates #{seen[key]} and #{pk} have the same name {name!r} and language {language!r}")
        seen.setdefault(key, pk)
    if problems:
        raise ConversionRefused(
            "post_office cannot convert this django-post_office database yet; nothing was changed. "
            "Each template name must be unique per language, a base template has no language and a "
            "translation has one. Fix these rows (in django-post_office's admin or a shell), then run "
            "migrate again:\n  " + "\n  ".join(problems)
        )
    _save_sqlite_sequences(schema_editor)


def split_addresses(text: str | None) -> list[str]:
    """django-post_office's ``"a@x, "Doe, John" <j@y>"`` as whole addresses.

    It joined addresses with ", " and split them on every comma when reading, which broke a display
    name holding a comma; a comma inside quotes, <...> or (...) is not a separator here, and a piece
    without an "@" (an unquoted name such as ``Doe, John <j@y>``) is joined to the piece after it.
    """
    if not text or not text.strip():
        return []
    pieces, current, quoted, depth, escaped = [], [], False, 0, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "<(":
            depth += 1
        elif not quoted and char in ">)" and depth:
            depth -= 1
        elif char == "," and not quoted and not depth:
            pieces.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    pieces.append("".join(current).strip())
    addresses: list[str] = []
    pending = ""
    for piece in filter(None, pieces):
        piece = f"{pending}, {piece}" if pending else piece
        if "@" in piece:
            addresses.append(piece)
            pending = ""
        else:
            pending = piece
    if pending:
        addresses.append(pending)
    return addresses


def fill_recipients(apps, schema_editor) -> None:
    """Copy to/cc/bcc (comma-separated text) into the new JSON list columns, in batches, resumably."""
    if not {"to", "cc", "bcc"} <= _columns(schema_editor, "post_office_email"):
        return  # a previous run got past this point: the old columns are gone, the new ones are filled
    Email = apps.get_model("post_office", "Email")
    db = schema_editor.connection.alias
    todo = Email.objects.using(db).filter(to_list__isnull=True).order_by("id")
    while True:
        batch = list(todo.only("id", "to", "cc", "bcc")[:BATCH])
        if not batch:
            break
        for email in batch:
            email.to_list = split_addresses(email.to)
            email.cc_list = split_addresses(email.cc)
            email.bcc_list = split_addresses(email.bcc)
        Email.objects.using(db).bulk_update(batch, ["to_list", "cc_list", "bcc_list"])
    _settle(schema_editor)


def unfill_recipients(apps, schema_editor) -> None:
    """Going back to django-post_office's schema: the lists as its comma-separated text again."""
    if not {"to", "to_list"} <= _columns(schema_editor, "post_office_email"):
        return
    Email = apps.get_model("post_office", "Email")
    db = schema_editor.connection.alias
    last_id = 0
    while True:
        batch = list(Email.objects.using(db).filter(id__gt=last_id).order_by("id").only("id", *LISTS)[:BATCH])
        if not batch:
            break
        for email in batch:
            email.to, email.cc, email.bcc = (", ".join(getattr(email, f"{name}_list") or []) for name in LISTS[:3])
        Email.objects.using(db).bulk_update(batch, ["to", "cc", "bcc"])
        last_id = batch[-1].id
    _settle(schema_editor)


LISTS = ("to", "cc", "bcc", "to_list", "cc_list", "bcc_list")


def fill_email_defaults(apps, schema_editor) -> None:
    """Give the columns django-post_office left nullable the values it meant by NULL.

    * priority NULL was sent like any other: medium.
    * number_of_retries NULL: none yet.
    * status NULL is a ``priority='now'`` email whose immediate sending never recorded a result;
      django-post_office never picks it up again, so it becomes failed, with a log entry saying why.
    """
    Email = apps.get_model("post_office", "Email")
    Log = apps.get_model("post_office", "Log")
    db = schema_editor.connection.alias
    Email.objects.using(db).filter(priority__isnull=True).update(priority=1)
    Email.objects.using(db).filter(number_of_retries__isnull=True).update(number_of_retries=0)
    stranded = list(Email.objects.using(db).filter(status__isnull=True).values_list("id", flat=True))
    for start in range(0, len(stranded), BATCH):
        ids = stranded[start : start + BATCH]
        Log.objects.using(db).bulk_create(
            Log(
                email_id=pk,
                status=1,
                exception_type="ConvertedFromDjangoPostOffice",
                message="django-post_office left this email without a status (its immediate sending never "
                "recorded a result) and would not have sent it; marked failed when the database was converted.",
            )
            for pk in ids
        )
        Email.objects.using(db).filter(id__in=ids).update(status=1)
    _settle(schema_editor)


def fill_languages(apps, schema_editor) -> None:
    """django-post_office pointed an email at the translation it used; record that language as ours does."""
    Email = apps.get_model("post_office", "Email")
    Template = apps.get_model("post_office", "EmailTemplate")
    db = schema_editor.connection.alias
    translations = Template.objects.using(db).exclude(language="").exclude(default_template=None)
    for pk, language in translations.values_list("id", "language"):
        Email.objects.using(db).filter(template_id=pk, language="").update(language=language, template_language=language)
    _settle(schema_editor)


def fill_attachments(apps, schema_editor) -> None:
    """The content hash of each attachment's file, and its dates from the emails it is linked to.

    A file missing from the storage gets an empty hash (the email fails for good at delivery,
    naming the file, as any missing attachment does here).
    """
    Attachment = apps.get_model("post_office", "Attachment")
    db = schema_editor.connection.alias
    todo = Attachment.objects.using(db).filter(content_hash="").order_by("id")
    last_id = 0
    while True:
        batch = list(todo.filter(id__gt=last_id)[:BATCH])
        if not batch:
            break
        for attachment in batch:
            attachment.content_hash = _file_hash(attachment.file)
            dates = attachment.emails.aggregate(first=models.Min("created"), last=models.Max("created"))
            if dates["first"] is not None:
                attachment.created = dates["first"]
                attachment.last_used = dates["last"]
        Attachment.objects.using(db).bulk_update(batch, ["content_hash", "created", "last_used"])
        last_id = batch[-1].id
    _settle(schema_editor)


def _file_hash(file) -> str:
    if not file.name:
        return ""
    digest = hashlib.sha256()
    try:
        with file.storage.open(file.name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


# --- SQLite's AUTOINCREMENT counters ------------------------------------------------------------


def _save_sqlite_sequences(schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in cursor.fetchall()}  # introspection.table_names() leaves sqlite_sequence out
        if "sqlite_sequence" not in tables or SEQUENCE_BACKUP_TABLE in tables:
            return  # nothing to keep, or saved by an earlier run that stopped halfway
        cursor.execute(f"CREATE TABLE {SEQUENCE_BACKUP_TABLE} (name text PRIMARY KEY, seq integer NOT NULL)")
        placeholders = ", ".join(["%s"] * len(TABLES))
        cursor.execute(
            f"INSERT INTO {SEQUENCE_BACKUP_TABLE} (name, seq) "  # noqa: S608 -- fixed names
            f"SELECT name, seq FROM sqlite_sequence WHERE name IN ({placeholders})",
            TABLES,
        )


def restore_sqlite_sequences(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        if SEQUENCE_BACKUP_TABLE not in connection.introspection.table_names(cursor):
            return
        cursor.execute(f"SELECT name, seq FROM {SEQUENCE_BACKUP_TABLE}")  # noqa: S608
        for name, seq in cursor.fetchall():
            cursor.execute("UPDATE sqlite_sequence SET seq = MAX(seq, %s) WHERE name = %s", [seq, name])
        cursor.execute(f"DROP TABLE {SEQUENCE_BACKUP_TABLE}")


def noop(apps, schema_editor) -> None:
    """Nothing to undo: going back leaves the data in the new form."""
