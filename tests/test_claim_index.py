"""The claim's index (models.ClaimIndex): its shape on each database, that a claim reads it, and the order it keeps.

benchmarks/RESULTS.md ("Claim cost") measures what it buys: the claim's cost with 1,000,000 queued emails.
"""

from __future__ import annotations

import datetime

from django.db import connection
from django.test import TestCase
from django.utils import timezone

from post_office.choices import CLAIMABLE
from post_office.delivery import Worker, claim
from post_office.models import PRIORITY, STATUS, Email
from tests.helpers import QueueTestMixin

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


def make(count: int, **fields: object) -> list[Email]:
    """``count`` emails stored in one statement (no validation: the claim is what is tested)."""
    defaults: dict[str, object] = {"from_email": "from@example.com", "to": ["to@example.com"], "subject": "x"}
    return Email.objects.bulk_create([Email(**{**defaults, **fields}) for _ in range(count)])


def analyze() -> None:
    """Fresh planner statistics on PostgreSQL, as autovacuum would leave them.

    (InnoDB keeps its own up to date; its ANALYZE TABLE would commit the test's transaction.)
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE post_office_email")


class ClaimIndexShapeTest(TestCase):
    def test_the_index_holds_the_claim_order_and_the_status_where_there_are_no_partial_indexes(self):
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, Email._meta.db_table)
        index = constraints["post_office_email_claim"]
        if connection.features.supports_partial_indexes:
            # WHERE status IN (queued, requeued): the condition is checked by the plan test below.
            self.assertEqual(index["columns"], ["priority", "id"])
        else:
            self.assertEqual(index["columns"], ["status", "priority", "id"])
        self.assertEqual(index["orders"][-2:], ["DESC", "ASC"])

    def test_the_claimable_statuses_are_written_into_the_statement(self):
        # SQLite uses the partial index only when the query repeats its condition's text.
        sql = str(Email.objects.queued().query)
        values = ", ".join(str(int(value)) for value in CLAIMABLE)
        self.assertIn(f"{connection.ops.quote_name('status')} IN ({values})", sql)


class ClaimPlanTest(TestCase):
    """With a queue much larger than a batch, a claim reads the index in order instead of sorting the queue."""

    def setUp(self) -> None:
        make(3000, status=STATUS.queued)
        make(200, status=STATUS.requeued, priority=PRIORITY.high)
        make(3000, status=STATUS.sent)
        analyze()

    def test_the_claim_reads_the_claim_index_without_sorting(self):
        plan = claim.explain(100)
        self.assertIn("post_office_email_claim", plan)
        vendor = connection.vendor
        if vendor == "postgresql":
            self.assertNotIn("Sort", plan)
            # The partial index holds only the queue: the claim reads the rows it takes.
            self.assertIn("Index Scan using post_office_email_claim", plan)
        elif vendor == "sqlite":
            self.assertNotIn("TEMP B-TREE", plan)
            # The UPDATE looks up the batch's ids, not every queued row of another index.
            self.assertIn("USING INTEGER PRIMARY KEY", plan)
            self.assertNotIn("post_office_email_lease", plan)
        else:
            self.assertNotIn("filesort", plan)

    def test_the_claim_with_another_sending_order_still_works(self):
        with self.settings(POST_OFFICE={"SENDING_ORDER": ["created"]}):
            self.assertIn("post_office_email", claim.explain(100))
            _token, emails = Worker().claim(100)
        self.assertEqual(len(emails), 100)


class ClaimOrderTest(QueueTestMixin, TestCase):
    """Claims take the due emails in the order the database gives ``due().in_sending_order()``."""

    backends = {"default": LOCMEM}

    def setUp(self) -> None:
        super().setUp()
        now = timezone.now()
        hour = datetime.timedelta(hours=1)
        # Queued and requeued emails interleaved by id, of every priority; some not due, expired or not claimable.
        for round_ in range(6):
            for priority in PRIORITY:
                status = STATUS.requeued if (round_ + priority) % 3 == 0 else STATUS.queued
                make(1, status=status, priority=priority, scheduled_time=now - hour if round_ % 2 else None)
            make(1, status=STATUS.queued, scheduled_time=now + hour)
            make(1, status=STATUS.queued, expires_at=now - hour)
            make(1, status=STATUS.sending, claimed_by="elsewhere", lease_expires_at=now + hour)
            make(1, status=STATUS.sent)

    def claimed_in_batches(self, size: int) -> list[set[int]]:
        batches: list[set[int]] = []
        while True:
            _token, emails = Worker().claim(size)
            if not emails:
                return batches
            batches.append({email.pk for email in emails})

    def check_order(self, order: list[str]) -> None:
        with self.po(SENDING_ORDER=order):
            expected = list(Email.objects.due().in_sending_order().values_list("id", flat=True))
            self.assertEqual(len(expected), 6 * len(PRIORITY))
            # Each batch takes the next rows of the database's order (within a batch, SENDING_ORDER
            # with PostgreSQL's place for NULL decides the order of delivery: claim._in_sending_order).
            chunks = [set(expected[start : start + 5]) for start in range(0, len(expected), 5)]
            self.assertEqual(self.claimed_in_batches(5), chunks)

    def test_priority_first_then_first_in_first_out_across_queued_and_requeued(self):
        self.check_order(["-priority"])
        taken = Email.objects.filter(status=STATUS.sending).exclude(claimed_by="elsewhere")
        self.assertEqual(taken.count(), 6 * len(PRIORITY))
        # Highest priority first, oldest first within a priority, whatever the status was.
        ordered = list(taken.order_by("-priority", "id").values_list("id", flat=True))
        self.assertEqual(ordered, sorted(ordered, key=lambda pk: (-Email.objects.get(pk=pk).priority, pk)))

    def test_other_sending_orders_follow_the_database(self):
        for order in (["priority"], ["scheduled_time"], ["-scheduled_time", "-priority"], ["-created"]):
            with self.subTest(order=order):
                Email.objects.filter(status=STATUS.sending).exclude(claimed_by="elsewhere").update(
                    status=STATUS.queued, claimed_by="", lease_expires_at=None
                )
                self.check_order(order)
