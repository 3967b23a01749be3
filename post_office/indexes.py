"""The queue's own index type: ``ClaimIndex``, the index a claim reads (``models`` re-exports it).

Migrations name it by this path (``post_office.indexes.ClaimIndex``): it stays here.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Lookup

from .choices import CLAIMABLE

__all__ = ["ClaimIndex", "claimable"]

#: The claimable statuses as SQL text: ``2, 3``.
CLAIMABLE_SQL = ", ".join(str(int(value)) for value in CLAIMABLE)


class _Claimable(Lookup):
    """``status IN (2, 3)`` with the values in the text (a Lookup, so that filter() uses it as it is)."""

    lookup_name = "claimable"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} IN ({CLAIMABLE_SQL})", tuple(params)


def claimable() -> Lookup:
    """A filter: the status is claimable (``CLAIMABLE``), with the values written into the statement.

    As in ClaimIndex's condition: SQLite uses a partial index only for a WHERE
    term with the same text as the index's, and a parameter is not the same text.
    A lookup, not a boolean expression: Django 6.1 compares an expression to
    True (``... IN (2, 3) = 1``), which no partial index matches.
    """
    return _Claimable(F("status"), True)


class ClaimIndex(models.Index):
    """The claim's index: the claimable emails (``CLAIMABLE``) in the default sending order.

    A partial index ``WHERE status IN (queued, requeued)`` where the database
    has them (PostgreSQL, SQLite): it holds only the queue, and a claim reads
    its first rows in order. MariaDB and MySQL have no partial indexes: there
    the status leads the columns, and a claim reads each claimable status's
    first rows (delivery/claim.py). The statuses are part of the index: a
    change to ``CLAIMABLE`` needs a migration that makes it again.
    """

    def _get_condition_sql(self, model: type[models.Model], schema_editor: Any) -> str | None:
        field: Any = model._meta.get_field("status")
        status = schema_editor.quote_name(field.column)
        return f"{status} IN ({CLAIMABLE_SQL})"

    def create_sql(self, model: type[models.Model], schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.features.supports_partial_indexes:
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        leading = models.Index(fields=["status", *self.fields], name=self.name)
        return leading.create_sql(model, schema_editor, using=using, **kwargs)
