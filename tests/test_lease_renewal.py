"""Renewing a live worker's leases touches only the rows it holds.

Found by tests/scale (many hosts on MariaDB): the renewal read every ``sending`` row through an
index leading with the status, so it locked index entries of other workers' rows just as they
recorded their results; the two deadlocked, MariaDB rolled the renewal back, the error ended
the pass, and what that worker had sent but not recorded yet was sent again once its lease ran
out. The renewal now looks its rows up by primary key and claim token.
"""

from __future__ import annotations

import datetime
from unittest import skipIf

from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from post_office import mail
from post_office.delivery import claim
from post_office.models import STATUS, Email

LEASE = datetime.timedelta(seconds=10)


@skipIf(connection.vendor == "sqlite", "SQLite has one writer: another worker's open write blocks every other")
class RenewalLocksTest(TransactionTestCase):
    def lock_wait_timeout(self, seconds: int) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            else:
                cursor.execute(f"SET lock_timeout = '{seconds}s'")

    def test_renewal_waits_for_no_other_worker_recording_its_results(self):
        # A queue of some size, so the database reads the few ``sending`` rows through an index.
        mail.send_many(
            [
                {
                    "recipients": [f"u{i}@example.com"],
                    "sender": "from@example.com",
                    "subject": f"mail {i}",
                    "message": "b",
                }
                for i in range(2000)
            ]
        )
        mine, my_emails = claim.claim("host-a:1", LEASE, 3)
        theirs, their_emails = claim.claim("host-b:2", LEASE, 3)
        self.assertEqual((len(my_emails), len(their_emails)), (3, 3))
        Email.objects.update(lease_expires_at=timezone.now())  # both claims about to run out

        # The other worker records its results, in a transaction not committed yet: its rows and
        # their index entries (the status changes) are locked.
        other = connection.copy()
        self.addCleanup(other.close)
        other.set_autocommit(False)
        with other.cursor() as cursor:
            table = connection.ops.quote_name(Email._meta.db_table)
            ids = ", ".join(str(email.pk) for email in their_emails)
            cursor.execute(
                f"UPDATE {table} SET status = %s, claimed_by = '', lease_expires_at = NULL "  # noqa: S608
                f"WHERE id IN ({ids}) AND claimed_by = %s",
                [int(STATUS.sent), theirs],
            )
        self.addCleanup(other.rollback)

        # Renewing mine waits for none of that (a second at most would fail it here).
        self.lock_wait_timeout(1)
        before = timezone.now()
        renewed = claim.renew({mine: [email.pk for email in my_emails]}, LEASE)
        self.assertEqual(renewed, 3)
        leases = Email.objects.filter(claimed_by=mine).values_list("lease_expires_at", flat=True)
        self.assertTrue(all(lease >= before + LEASE for lease in leases), leases)

    def test_renewal_leaves_rows_no_longer_held_under_the_token(self):
        for i in range(4):
            mail.send([f"u{i}@example.com"], "from@example.com", subject=f"mail {i}", message="b")
        token, emails = claim.claim("host-a:1", LEASE, 4)
        first, second, *rest = emails
        # One was recorded sent (the token cleared); one went back to the queue and another worker took it.
        Email.objects.filter(pk=first.pk).update(status=STATUS.sent, claimed_by="", lease_expires_at=None)
        Email.objects.filter(pk=second.pk).update(claimed_by="host-b:2:other", lease_expires_at=timezone.now())
        renewed = claim.renew({token: [email.pk for email in emails]}, LEASE)
        self.assertEqual(renewed, len(rest))
        self.assertIsNone(Email.objects.get(pk=first.pk).lease_expires_at)
        self.assertLess(Email.objects.get(pk=second.pk).lease_expires_at, timezone.now() + LEASE / 2)
