"""Read a switched database through this package's ORM (runs under .venv's interpreter).

The project is tests/switch/dpo_project, with the same DPO_SWITCH_* environment fill_dpo.py had::

    .venv/bin/python tests/switch/read_switched.py dump OUT.json   # every row, as our models read them
    .venv/bin/python tests/switch/read_switched.py add OUT.json    # new rows through our API: their ids
    .venv/bin/python tests/switch/read_switched.py schema OUT.json # the tables as the database describes them

``dump`` writes every row of post_office's and the shop's models (to/cc/bcc as our lists, dates as
UTC ISO strings), each attachment file's SHA-256 read through our storage, which emails each
attachment is linked to, how the shop's rows resolve through our relations, and the shop tables'
foreign keys as the database reports them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "dpo_project"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpo_site.settings")

import django  # noqa: E402

django.setup()

from django.apps import apps  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.db import DatabaseError, connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Campaign, Order  # noqa: E402

from post_office import mail  # noqa: E402
from post_office.models import Attachment, Email, EmailTemplate, Log  # noqa: E402

UTC = datetime.timezone.utc


def _json_value(value):
    if isinstance(value, datetime.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _rows(model) -> list[dict]:
    rows = model._base_manager.order_by("pk").values()
    return [{key: _json_value(value) for key, value in row.items()} for row in rows]


def _foreign_keys(table: str) -> dict[str, list[str]]:
    """Column -> [table, column] of each foreign key constraint the database has on this table."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        constraint["columns"][0]: list(constraint["foreign_key"])
        for constraint in constraints.values()
        if constraint["foreign_key"]
    }


def _columns(table: str) -> dict[str, str]:
    """Column -> its type as Django's introspection reads it (e.g. BigIntegerField)."""
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, table)
        return {
            column.name: connection.introspection.get_field_type(column.type_code, column) for column in description
        }


def _json_lookups() -> dict[str, object]:
    """JSON queries on the columns django-post_office filled (the admin filters attachments this way)."""
    queries = {
        "emails with header X-Shop-Order": lambda: Email.objects.filter(headers__has_key="X-Shop-Order"),
        "emails with context name Jürgen": lambda: Email.objects.filter(context__name="Jürgen"),
        "attachments with header Content-ID": lambda: Attachment.objects.filter(headers__has_key="Content-ID"),
    }
    found: dict[str, object] = {}
    for label, query in queries.items():
        try:
            found[label] = sorted(query().values_list("pk", flat=True))
        except DatabaseError as error:
            found[label] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return found


def dump() -> dict:
    existing = set(connection.introspection.table_names())
    models = {model._meta.db_table: model for model in apps.get_app_config("post_office").get_models()}
    models.update({"shop_order": Order, "shop_campaign": Campaign})
    # A model whose migration is still to come has no table: it has no rows to compare either.
    models = {table: model for table, model in models.items() if table in existing}
    files = {}
    for attachment in Attachment.objects.order_by("pk"):
        try:
            with attachment.file.open("rb") as handle:
                files[str(attachment.pk)] = hashlib.sha256(handle.read()).hexdigest()
        except OSError as error:
            files[str(attachment.pk)] = f"unreadable: {error}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
        migrations = [list(row) for row in cursor.fetchall()]
    return {
        "fields": {table: [field.attname for field in model._meta.concrete_fields] for table, model in models.items()},
        "tables": {table: _rows(model) for table, model in models.items()},
        "attachment_links": sorted(
            [attachment.pk, email.pk] for attachment in Attachment.objects.all() for email in attachment.emails.all()
        ),
        "files": files,
        "orders": {
            order.number: {
                "confirmation": order.confirmation.pk if order.confirmation else None,
                "reminder": order.reminder.pk if order.reminder else None,
            }
            for order in Order.objects.select_related("confirmation", "reminder")
        },
        "campaigns": {campaign.name: campaign.template.pk for campaign in Campaign.objects.select_related("template")},
        "foreign_keys": {table: _foreign_keys(table) for table in ("shop_order", "shop_campaign")},
        "column_types": {
            table: _columns(table)
            for table in ("post_office_email", "post_office_emailtemplate", "shop_order", "shop_campaign")
        },
        "migrations": migrations,
        "json_lookups": _json_lookups(),
    }


def schema() -> dict:
    """Every post_office and shop table as the database describes it: column types, NULLs, constraints.

    Constraint and index names are left out: only what they cover and enforce is compared.
    """
    introspection = connection.introspection
    tables = sorted(t for t in introspection.table_names() if t.startswith(("post_office_", "shop_")))
    result = {}
    with connection.cursor() as cursor:
        for table in tables:
            columns = {
                column.name: [introspection.get_field_type(column.type_code, column), bool(column.null_ok)]
                for column in introspection.get_table_description(cursor, table)
            }
            constraints = sorted(
                json.dumps(
                    {
                        "columns": constraint["columns"] or [],
                        "primary_key": bool(constraint["primary_key"]),
                        "unique": bool(constraint["unique"]),
                        "foreign_key": list(constraint["foreign_key"] or []),
                        "check": bool(constraint["check"]),
                        "index": bool(constraint["index"]),
                        "orders": constraint.get("orders") or [],
                    },
                    sort_keys=True,
                )
                for constraint in introspection.get_constraints(cursor, table).values()
            )
            result[table] = {"columns": columns, "constraints": constraints}
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations WHERE app IN ('post_office', 'shop') ORDER BY id")
        migrations = sorted(f"{app}.{name}" for app, name in cursor.fetchall())
    return {"tables": result, "migrations": migrations}


def add() -> dict:
    """New rows through our API after the switch: each must get an id above the copied ones."""
    template = EmailTemplate.objects.create(name="after_switch", subject="After {{ x }}", content="Body {{ x }}")
    email = mail.send(
        recipients=['"After, Switch" <after@example.com>'],
        sender="shop@example.com",
        template=template,
        context={"x": "the switch"},
        attachments={"after.txt": ContentFile(b"a file added after the switch")},
    )
    log = Log.objects.create(email=email, status=0, message="added after the switch")
    order = Order.objects.create(number="A-2000", confirmation=email, reminder=email)
    campaign = Campaign.objects.create(name="After the switch", template=template)
    return {
        "post_office_email": email.pk,
        "post_office_emailtemplate": template.pk,
        "post_office_attachment": email.attachments.get().pk,
        "post_office_log": log.pk,
        "shop_order": order.pk,
        "shop_campaign": campaign.pk,
        "email_to": Email.objects.get(pk=email.pk).to,
    }


def main() -> None:
    commands = {"dump": dump, "add": add, "schema": schema}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit("usage: read_switched.py dump|add|schema OUT.json")
    result = commands[sys.argv[1]]()
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False))


if __name__ == "__main__":
    main()
