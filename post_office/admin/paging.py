"""Pages of a list of millions of rows, without counting them all on every page.

Django's changelist asks its paginator for ``count`` on every page, and a plain
``COUNT(*)`` reads every matching row: over the whole email table that is the
slowest query of the page. ``EstimatedCountPaginator`` counts at most
``exact_up_to + 1`` rows (``COUNT`` over a ``LIMIT``-ed subquery, served by the
index the filters use). Beyond that it takes the database's own estimate of the
rows the query returns (PostgreSQL's and MySQL's/MariaDB's planner, through
EXPLAIN; on SQLite, which has none, it counts), and says so: the list shows
"about 1,000,000 emails", never a made-up exact figure.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.utils.formats import number_format
from django.utils.functional import cached_property

__all__ = ["EstimatedCountPaginator", "estimated_rows"]


class EstimatedCountPaginator(Paginator):
    #: Up to this many rows the count is exact.
    exact_up_to = 10_000
    #: Whether ``count`` is the database's estimate (more than ``exact_up_to`` rows).
    estimated = False

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return super().count
        # The rows that matter for counting: no ordering, no joined columns.
        bare = rows.order_by().values("pk")
        counted = bare[: self.exact_up_to + 1].count()
        if counted <= self.exact_up_to:
            return counted
        estimate = estimated_rows(bare)
        if estimate is None:
            return bare.count()
        self.estimated = True
        # A planner's estimate can be short of what we just counted.
        return max(estimate, counted)

    def page(self, number: Any) -> Page:
        """The page; with an estimated count, always a full one (an estimate must not cut its last rows)."""
        if not self.estimated:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.object_list[bottom : bottom + self.per_page], number, self)

    @property
    def about(self) -> str:
        """The count for people: exact, or an estimate rounded to two significant digits."""
        count = self.count
        if self.estimated:
            count = round(count, 2 - len(str(count)))
        return number_format(count, force_grouping=True)


def estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """The database's estimate of the rows ``queryset`` returns, or None when it has none (SQLite)."""
    connection = connections[queryset.db]
    if connection.vendor not in ("postgresql", "mysql"):
        return None
    sql, params = queryset.query.sql_with_params()
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                return int(plan[0]["Plan"]["Plan Rows"])
            # MariaDB shows the share of rows its conditions keep ("filtered") only with EXTENDED.
            cursor.execute(
                f"EXPLAIN {'EXTENDED ' if getattr(connection, 'mysql_is_mariadb', False) else ''}{sql}", params
            )
            columns = [column[0].lower() for column in cursor.description]
            row = dict(zip(columns, cursor.fetchone(), strict=True))
            filtered = float(row.get("filtered") or 100)
            return int(int(row["rows"]) * filtered / 100)
    except (DatabaseError, KeyError, IndexError, TypeError, ValueError):
        # An estimate is a convenience: without one the paginator counts.
        return None
