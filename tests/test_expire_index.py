"""The expiry index (models.ExpiryIndex): its shape on each database, that a pass reads it, and what expiry fails.

benchmarks/RESULTS.md ("Cost that does not grow with the backlog") measures what it buys: the start of a pass
with 1,000,000 queued emails.
"""

from __future__ import annotations

import datetime

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office.delivery import Worker, claim, expiry
from post_office.models import STATUS, Email, Log
from tests.test_claim_index import analyze, make

HOUR = datetime.timedelta(hours=1)


#: The claimable statuses in an index's stored condition: as written (SQLite), as PostgreSQL rewrites it.
CLAIMABLE_CONDITION = r"status\)? (IN \(2, 3\)|= ANY \(ARRAY\[2, 3\]\))"


def index_definition(name: str) -> str:
    """An index's CREATE text as the database stores it (PostgreSQL, SQLite), without quotes."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [name])
        return cursor.fetchone()[0].replace('"', "")


class ExpiryIndexShapeTest(TestCase):
    def test_partial_where_the_database_has_partial_indexes_else_led_by_the_status(self):
        with connection.cursor() as cursor:
            index = connection.introspection.get_constraints(cursor, Email._meta.db_table)["post_office_email_expiry"]
        if connection.features.supports_partial_indexes:
            self.assertEqual(index["columns"], ["expires_at"])
            # Only the queue, and only its emails with an expiry: one without adds no entry.
            definition = index_definition("post_office_email_expiry")
            self.assertRegex(definition, rf"WHERE.*{CLAIMABLE_CONDITION}.* AND .*expires_at\)? IS NOT NULL")
        else:
            self.assertEqual(index["columns"], ["status", "expires_at"])

    def test_the_claim_index_keeps_its_condition(self):
        if not connection.features.supports_partial_indexes:
            self.skipTest("no partial indexes")
        definition = index_definition("post_office_email_claim")
        self.assertRegex(definition, rf"WHERE.*{CLAIMABLE_CONDITION}")
        self.assertNotIn("NOT NULL", definition)


class PassStartPlanTest(TestCase):
    """With a queue much larger than what has expired, a pass start reads the expired rows, not the queue."""

    def setUp(self) -> None:
        now = timezone.now()
        make(3000, status=STATUS.queued)
        make(300, status=STATUS.queued, expires_at=now + HOUR)
        make(5, status=STATUS.queued, expires_at=now - HOUR)
        make(3000, status=STATUS.sent, expires_at=now - HOUR)
        analyze()

    def test_the_expired_mail_is_read_from_the_expiry_index(self):
        plan = expiry.explain()["expire"]
        self.assertIn("post_office_email_expiry", plan)
        if connection.vendor == "postgresql":
            self.assertNotIn("Seq Scan", plan)
        elif connection.vendor == "sqlite":
            self.assertIn("USING INDEX post_office_email_expiry (expires_at<?)", plan)
        else:
            self.assertIn("range", plan)

    def test_the_stale_leases_are_read_from_an_index_of_the_emails_being_sent(self):
        # The lease index, or the queue index's status (the planner's choice when none is being sent).
        plan = expiry.explain()["requeue"]
        self.assertRegex(plan, "post_office_email_(lease|queue)")
        self.assertNotIn("Seq Scan", plan)

    def test_the_sqlite_update_of_expired_mail_looks_its_ids_up(self):
        if connection.vendor != "sqlite":
            self.skipTest("SQLite's planner only")
        with CaptureQueriesContext(connection) as queries:
            self.assertEqual(expiry.fail_expired("w", log=False), 5)
        updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        # The one that fails them (NOT INDEXED); before SQLite 3.35 (no RETURNING) the one that clears the tag.
        self.assertEqual(len(updates), 1 if claim.update_returns_rows() else 2)
        self.assertIn("NOT INDEXED", updates[0])
        with connection.cursor() as cursor:
            # The captured text has its values written in (SQLite's last_executed_query).
            cursor.execute(f"EXPLAIN QUERY PLAN {updates[0]}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        self.assertIn("INTEGER PRIMARY KEY", plan)
        self.assertNotIn("post_office_email_lease", plan)


class FailExpiredTest(TestCase):
    """Expired queued and requeued mail fails with an "Expired" Log row; nothing else is touched."""

    def test_only_claimable_mail_past_its_expiry_fails(self):
        now = timezone.now()
        expired_queued = make(3, status=STATUS.queued, expires_at=now - HOUR)
        expired_requeued = make(2, status=STATUS.requeued, expires_at=now - datetime.timedelta(seconds=1))
        untouched = [
            *make(2, status=STATUS.queued, expires_at=now + HOUR),
            *make(2, status=STATUS.queued),
            *make(1, status=STATUS.sent, expires_at=now - HOUR),
            *make(1, status=STATUS.failed, expires_at=now - HOUR),
            *make(1, status=STATUS.sending, claimed_by="other:1", lease_expires_at=now + HOUR, expires_at=now - HOUR),
        ]
        before = {
            email.pk: (email.status, email.claimed_by)
            for email in Email.objects.filter(pk__in=[e.pk for e in untouched])
        }
        worker = Worker(log_level=1)
        worker.fail_expired()
        self.assertEqual(worker.stats.expired, 5)
        failed = [e.pk for e in expired_queued + expired_requeued]
        self.assertEqual(
            set(Email.objects.filter(pk__in=failed).values_list("status", "claimed_by")), {(STATUS.failed, "")}
        )
        logs = Log.objects.filter(email_id__in=failed)
        self.assertEqual(sorted(logs.values_list("email_id", flat=True)), sorted(failed))
        self.assertEqual(set(logs.values_list("exception_type", "message")), {("Expired", "expires_at has passed")})
        after = {email.pk: (email.status, email.claimed_by) for email in Email.objects.filter(pk__in=before)}
        self.assertEqual(after, before)
        self.assertEqual(Log.objects.count(), 5)

    def test_a_stale_claim_token_on_expired_mail_is_cleared(self):
        # As before RETURNING: a failed expired email names no claim, whatever it held.
        email = make(1, status=STATUS.requeued, claimed_by="old:1:abc", expires_at=timezone.now() - HOUR)[0]
        self.assertEqual(expiry.fail_expired("w", log=False), 1)
        email.refresh_from_db()
        self.assertEqual((email.status, email.claimed_by), (STATUS.failed, ""))

    def test_more_than_one_read_of_expired_mail(self):
        # fail_expired reads 1,000 ids at a time: 1,200 take two reads and a third that finds none.
        make(1200, status=STATUS.queued, expires_at=timezone.now() - HOUR)
        self.assertEqual(expiry.fail_expired("w", log=False), 1200)
        self.assertFalse(Email.objects.queued().exists())
        self.assertEqual(expiry.fail_expired("w", log=False), 0)

    def test_an_expiry_set_after_queueing_is_seen(self):
        # The index follows updates of the row: an expiry added later, or a requeued email that has one.
        email = make(1, status=STATUS.queued)[0]
        self.assertEqual(expiry.expired_ids(timezone.now(), 10), [])
        Email.objects.filter(pk=email.pk).update(expires_at=timezone.now() - HOUR)
        self.assertEqual(expiry.expired_ids(timezone.now(), 10), [email.pk])
        Email.objects.filter(pk=email.pk).update(status=STATUS.sent)
        self.assertEqual(expiry.expired_ids(timezone.now(), 10), [])
