"""The indexes mail.send's INSERT does not write (models.LeaseIndex, models.PresentIndex, message_id's):
their shape on each database, and that their readers still read them.

benchmarks/RESULTS.md ("A cheaper mail.send") measures what they save per INSERT.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connection
from django.test import TestCase
from django.utils import timezone

from post_office.models import STATUS, Email
from tests.test_claim_index import analyze, make
from tests.test_expire_index import index_definition

HOUR = datetime.timedelta(hours=1)


def constraints() -> dict[str, Any]:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, Email._meta.db_table)


def plan(queryset: object) -> str:
    """The database's plan for a queryset's SELECT, as one text."""
    sql, params = queryset.query.sql_with_params()  # type: ignore[attr-defined]
    prefix = {"postgresql": "EXPLAIN (COSTS OFF)", "sqlite": "EXPLAIN QUERY PLAN"}.get(connection.vendor, "EXPLAIN")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: only a usable index avoids it
        cursor.execute(f"{prefix} {sql}", params)
        return "\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall())


class ShapeTest(TestCase):
    def test_the_lease_index_holds_only_the_emails_being_sent(self):
        index = constraints()["post_office_email_lease"]
        if connection.features.supports_partial_indexes:
            self.assertEqual(index["columns"], ["lease_expires_at"])
            self.assertRegex(
                index_definition("post_office_email_lease"), rf"WHERE \(?status\)? = {int(STATUS.sending)}"
            )
        else:
            self.assertEqual(index["columns"], ["status", "lease_expires_at"])

    def test_the_scheduled_index_holds_only_scheduled_emails(self):
        index = constraints()["post_office_email_scheduled"]
        self.assertEqual(index["columns"], ["scheduled_time"])
        if connection.features.supports_partial_indexes:
            self.assertRegex(index_definition("post_office_email_scheduled"), r"WHERE \(?scheduled_time IS NOT NULL")

    def test_message_id_has_one_index(self):
        on_message_id = [name for name, c in constraints().items() if c["index"] and c["columns"] == ["message_id"]]
        # PostgreSQL made a second (varchar_pattern_ops, for LIKE) for the field's former db_index.
        self.assertEqual(on_message_id, ["post_office_email_message_id"])


class ReadersTest(TestCase):
    def setUp(self) -> None:
        now = timezone.now()
        make(300, status=STATUS.sent)
        make(300, status=STATUS.queued)
        make(5, status=STATUS.sending, claimed_by="w:1", lease_expires_at=now - HOUR)
        make(5, status=STATUS.queued, scheduled_time=now + HOUR)
        make(1, status=STATUS.sent, message_id="<abc@example.com>")
        analyze()

    def test_stale_leases_read_an_index_of_the_emails_being_sent(self):
        found = plan(Email.objects.stale_leases().values_list("id", flat=True))
        if connection.vendor == "sqlite":
            # Without statistics SQLite prefers the status's equality (the queue index) to the lease's range.
            self.assertRegex(found, r"USING (COVERING )?INDEX post_office_email_(lease|queue) \((status=\?|lease)")
        else:
            self.assertIn("post_office_email_lease", found)
        self.assertEqual(Email.objects.stale_leases().count(), 5)

    def test_a_scheduled_time_range_reads_the_scheduled_index(self):
        now = timezone.now()
        queryset = Email.objects.filter(scheduled_time__gte=now, scheduled_time__lt=now + 2 * HOUR)
        self.assertIn("post_office_email_scheduled", plan(queryset.values_list("id", flat=True)))
        self.assertEqual(queryset.count(), 5)
        self.assertIn("post_office_email_scheduled", plan(Email.objects.filter(scheduled_time__isnull=False)))

    def test_a_message_id_lookup_reads_its_index(self):
        queryset = Email.objects.filter(message_id="<abc@example.com>")
        self.assertIn("post_office_email_message_id", plan(queryset.values_list("id", flat=True)))
        self.assertEqual(queryset.count(), 1)
