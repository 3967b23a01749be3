"""What a conversion left in the database, read through Django's introspection (runs under .venv's interpreter).

Used by tests/switch/test_dpo_kill.py after each ``migrate`` it killed, with the same DPO_SWITCH_*
environment as fill_dpo.py and read_switched.py::

    .venv/bin/python tests/switch/conversion_state.py OUT.json

Writes the post_office migrations recorded, every post_office and shop table with its columns (name ->
type as Django reads it) and its constraint and index names, and a few counts that show how far the
data steps got. Reads only: no model is used, so it works on a database in any half-converted state.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "dpo_project"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpo_site.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

#: (label, table, column that must exist, SQL condition): rows counted when the column is there.
COUNTS = [
    ("emails", "post_office_email", "id", "1 = 1"),
    ("emails without to_list", "post_office_email", "to_list", "to_list IS NULL"),
    ("emails without status", "post_office_email", "status", "status IS NULL"),
    ("emails without priority", "post_office_email", "priority", "priority IS NULL"),
    ("attachments without content_hash", "post_office_attachment", "content_hash", "content_hash = ''"),
    ("logs", "post_office_log", "id", "1 = 1"),
]


def state() -> dict:
    introspection = connection.introspection
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        names = sorted(name for name in introspection.table_names(cursor) if name.startswith(("post_office_", "shop_")))
        tables = {}
        for table in names:
            columns = {
                column.name: introspection.get_field_type(column.type_code, column)
                for column in introspection.get_table_description(cursor, table)
            }
            constraints = introspection.get_constraints(cursor, table)
            tables[table] = {
                "columns": columns,
                "constraints": sorted(constraints),
                "foreign_keys": sorted(
                    "{}->{}.{}".format(info["columns"][0], *info["foreign_key"])
                    for info in constraints.values()
                    if info["foreign_key"]
                ),
            }
        counts = {}
        for label, table, column, condition in COUNTS:
            if column in tables.get(table, {}).get("columns", {}):
                cursor.execute(f"SELECT COUNT(*) FROM {quote(table)} WHERE {condition}")  # noqa: S608 -- fixed names
                counts[label] = cursor.fetchone()[0]
        cursor.execute("SELECT name FROM django_migrations WHERE app = 'post_office' ORDER BY id")
        migrations = [row[0] for row in cursor.fetchall()]
    return {"migrations": migrations, "tables": tables, "counts": counts}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: conversion_state.py OUT.json")
    Path(sys.argv[1]).write_text(json.dumps(state(), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
