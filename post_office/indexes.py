"""The queue's own index types (``models`` re-exports them): ``ClaimIndex``, the index a claim reads,
and ``ExpiryIndex``, the one a pass reads for expired mail; with them neither grows with the queue
(benchmarks/RESULTS.md, "Cost that does not grow with the backlog"). ``LeaseIndex`` and
``PresentIndex`` hold only the rows their readers look for, so that ``mail.send``'s INSERT does
not write to them (benchmarks/RESULTS.md, "A cheaper mail.send").

Migrations name them by this path (``post_office.indexes.ClaimIndex``): they stay here.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Lookup

from .choices import CLAIMABLE, STATUS

__all__ = ["ClaimIndex", "ExpiryIndex", "LeaseIndex", "PresentIndex", "claimable"]

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


class _PartialIndex(models.Index):
    """An index partial where the database has partial indexes (PostgreSQL, SQLite), its condition
    written by the class (``_terms``); on MariaDB and MySQL, which have none, a whole index with the
    :attr:`leading` columns before its own.
    """

    #: Columns put before the index's own where the database has no partial indexes.
    leading: tuple[str, ...] = ()

    def _terms(self, quoted: Any) -> list[str]:
        raise NotImplementedError

    def _get_condition_sql(self, model: type[models.Model], schema_editor: Any) -> str | None:
        def quoted(name: str) -> str:
            field: Any = model._meta.get_field(name)
            return str(schema_editor.quote_name(field.column))

        return " AND ".join(self._terms(quoted))

    def create_sql(self, model: type[models.Model], schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.features.supports_partial_indexes:
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        whole = models.Index(fields=[*self.leading, *self.fields], name=self.name)
        return whole.create_sql(model, schema_editor, using=using, **kwargs)


class _QueueIndex(_PartialIndex):
    """An index of the claimable emails only: partial where the database has partial indexes.

    On PostgreSQL and SQLite the condition is ``status IN (2, 3)`` (and the
    columns of ``not_null`` are not NULL); on MariaDB and MySQL, which have no
    partial indexes, the status leads the columns instead. The statuses are
    part of the index: a change to ``CLAIMABLE`` needs a migration that makes
    it again.
    """

    leading = ("status",)
    #: Columns whose NULL rows the partial index leaves out.
    not_null: tuple[str, ...] = ()

    def _terms(self, quoted: Any) -> list[str]:
        return [f"{quoted('status')} IN ({CLAIMABLE_SQL})", *(f"{quoted(name)} IS NOT NULL" for name in self.not_null)]


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


class LeaseIndex(_PartialIndex):
    """The index lease recovery reads: the emails being sent, by the end of their lease.

    Partial on PostgreSQL and SQLite, ``WHERE status = sending``: a queued email
    (what ``mail.send`` inserts) and a finished one hold no entry; a worker's
    claim adds the entry and its result takes it out. ``filter(status=STATUS.sending,
    lease_expires_at__lt=...)`` reads it on both (SQLite matches the bound
    status to the condition's). On MariaDB and MySQL ``(status, lease_expires_at)``.
    """

    leading = ("status",)

    def _terms(self, quoted: Any) -> list[str]:
        return [f"{quoted('status')} = {int(STATUS.sending)}"]


class PresentIndex(_PartialIndex):
    """An index of the rows where its columns are set: ``WHERE column IS NOT NULL`` on PostgreSQL
    and SQLite, a whole index on MariaDB and MySQL.

    For columns mostly NULL (an email's ``scheduled_time``): an email queued
    without one writes no entry, and a comparison (``scheduled_time >= ...``,
    ``IS NOT NULL``) reads it on both databases. ``IS NULL`` and a sort over
    every row do not.
    """

    def _terms(self, quoted: Any) -> list[str]:
        return [f"{quoted(name.lstrip('-'))} IS NOT NULL" for name in self.fields]
