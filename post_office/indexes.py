"""The queue's own index types (``models`` re-exports them): ``ClaimIndex``, the index a claim reads,
and ``ExpiryIndex``, the one a pass reads for expired mail; with them neither grows with the queue
(benchmarks/RESULTS.md, "Cost that does not grow with the backlog").

Migrations name them by this path (``post_office.indexes.ClaimIndex``): they stay here.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Lookup

from .choices import CLAIMABLE

__all__ = ["ClaimIndex", "ExpiryIndex", "claimable"]

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


class _QueueIndex(models.Index):
    """An index of the claimable emails only: partial where the database has partial indexes.

    On PostgreSQL and SQLite the condition is ``status IN (2, 3)`` (and the
    columns of ``not_null`` are not NULL); on MariaDB and MySQL, which have no
    partial indexes, the status leads the columns instead. The statuses are
    part of the index: a change to ``CLAIMABLE`` needs a migration that makes
    it again.
    """

    #: Columns whose NULL rows the partial index leaves out.
    not_null: tuple[str, ...] = ()

    def _get_condition_sql(self, model: type[models.Model], schema_editor: Any) -> str | None:
        def quoted(name: str) -> str:
            field: Any = model._meta.get_field(name)
            return str(schema_editor.quote_name(field.column))

        terms = [f"{quoted('status')} IN ({CLAIMABLE_SQL})", *(f"{quoted(name)} IS NOT NULL" for name in self.not_null)]
        return " AND ".join(terms)

    def create_sql(self, model: type[models.Model], schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.features.supports_partial_indexes:
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        leading = models.Index(fields=["status", *self.fields], name=self.name)
        return leading.create_sql(model, schema_editor, using=using, **kwargs)


class ClaimIndex(_QueueIndex):
    """The claim's index: the claimable emails (``CLAIMABLE``) in the default sending order.

    A partial index ``WHERE status IN (queued, requeued)`` where the database
    has them (PostgreSQL, SQLite): it holds only the queue, and a claim reads
    its first rows in order. MariaDB and MySQL have no partial indexes: there
    the status leads the columns, and a claim reads each claimable status's
    first rows (delivery/claim.py).
    """


class ExpiryIndex(_QueueIndex):
    """The index a pass reads for expired mail: the claimable emails that have an expiry, by ``expires_at``.

    Partial on PostgreSQL and SQLite, ``WHERE status IN (queued, requeued) AND
    expires_at IS NOT NULL``: an email queued without an expiry (most) adds no
    entry, and ``Email.objects.expired()`` reads only the expired ones. SQLite
    takes it for that query because the query repeats the status condition as
    text (``claimable()``) and ``expires_at <= now`` implies the IS NOT NULL.
    On MariaDB and MySQL ``(status, expires_at)``: one range per claimable status.
    """

    not_null = ("expires_at",)
