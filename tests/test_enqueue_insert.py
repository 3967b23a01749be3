"""mail.send in one statement, send_many in multi-row INSERTs (post_office/enqueue/insert.py).

The statement that inserts a ``send()`` also checks the do-not-send list and,
on PostgreSQL, sends the NOTIFY; the rows it writes must be exactly the rows
Django's own ``save()`` and ``bulk_create()`` write.
"""

from __future__ import annotations

import datetime
import json
import unittest
from typing import Any
from unittest import mock

from django.db import DatabaseError, connection, models, transaction
from django.db.models.signals import post_save, pre_save
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import mail
from post_office.enqueue import insert
from post_office.enqueue.prepare import prepare
from post_office.enqueue.request import EmailRequest
from post_office.enqueue.store import lookup_for
from post_office.models import STATUS, DoNotSendEntry, Email, EmailTemplate, Log
from post_office.signals import email_queued

SENDER = "from@example.com"
POSTGRES = connection.vendor == "postgresql"


def varied(**overrides: Any) -> dict[str, Any]:
    """send() arguments touching every kind of column: lists, JSON, dates, text, a header."""
    kwargs: dict[str, Any] = {
        "recipients": ["Ann Example <ann@example.com>", "bob@example.com"],
        "cc": ["carl@example.com"],
        "bcc": ["dora@example.com"],
        "sender": "Shop <shop@example.com>",
        "subject": "Grüße, ünïcödé",
        "message": "plain",
        "html_message": "<p>html</p>",
        "headers": {"X-Tag": "a"},
        "scheduled_time": timezone.now() + datetime.timedelta(hours=1),
        "expires_at": timezone.now() + datetime.timedelta(days=2),
        "priority": "high",
        "language": "de",
    }
    kwargs.update(overrides)
    return kwargs


def stored(email: Email) -> dict[str, Any]:
    """The row as read back, without what differs between two inserts (id, times, Message-ID)."""
    row: dict[str, Any] = dict(Email.objects.filter(pk=email.pk).values().get())
    for name in ("id", "created", "last_updated", "message_id"):
        row.pop(name)
    return row


def django_saved(**kwargs: Any) -> Email:
    """The email send() would store, written by Django's own save() instead."""
    request = EmailRequest(**kwargs)
    email = prepare(request, lookup_for([request])).email
    email.save()
    return email


class OneStatementTest(TestCase):
    def test_send_is_one_statement(self):
        with CaptureQueriesContext(connection) as queries:
            email = mail.send(["to@example.com"], SENDER, subject="one", message="body")
        # In a test case's transaction: the INSERT (list check and NOTIFY in it) and nothing else.
        statements = [q["sql"] for q in queries.captured_queries]
        self.assertEqual(len(statements), 1, statements)
        self.assertIn("NOT EXISTS", statements[0])
        self.assertEqual("pg_notify" in statements[0], POSTGRES)
        self.assertEqual(Email.objects.get(pk=email.pk).subject, "one")
        self.assertFalse(email._state.adding)

    def test_the_row_is_the_row_save_writes(self):
        for kwargs in (varied(), varied(template=None, context={"a": 1}, subject="{{ a }}"), varied(cc=None, bcc=None)):
            with self.subTest(kwargs=kwargs):
                fast = mail.send(**kwargs)
                self.assertEqual(stored(fast), stored(django_saved(**kwargs)))

    def test_a_template_email_is_the_row_save_writes(self):
        EmailTemplate.objects.create(name="t", subject="Hi {{ n }}", content="c {{ n }}", html_content="<b>{{ n }}</b>")
        kwargs = {"recipients": ["a@example.com"], "sender": SENDER, "template": "t", "context": {"n": 3}}
        fast = mail.send(**kwargs)
        self.assertEqual(stored(fast), stored(django_saved(**kwargs)))
        deferred = {**kwargs, "render_on_delivery": True}
        self.assertEqual(stored(mail.send(**deferred)), stored(django_saved(**deferred)))

    def test_values_are_converted_as_django_converts_them(self):
        plan = insert.plan_for("default")
        assert plan is not None
        request = EmailRequest(**varied(context=None))
        email = prepare(request, lookup_for([request])).email
        now = timezone.now()
        with mock.patch("django.utils.timezone.now", return_value=now):
            ours = plan.row(email)
            django = [
                column.field.get_db_prep_save(column.field.pre_save(email, True), connection) for column in plan.columns
            ]
        for column, value, expected in zip(plan.columns, ours, django, strict=True):
            with self.subTest(column=column.attname):
                if isinstance(column.field, models.JSONField) and expected is not None:
                    # The text Django stores: its adapter holds the value (psycopg's Jsonb) or is that text.
                    self.assertIsInstance(value, str)
                    self.assertEqual(value, json.dumps(expected.obj if hasattr(expected, "obj") else json.loads(expected)))
                else:
                    self.assertEqual(str(value), str(expected))

    def test_signals_as_save_sends_them(self):
        seen: list[tuple[Any, ...]] = []

        def before(sender: Any, instance: Email, **kwargs: Any) -> None:
            seen.append(("pre", instance.pk))

        def after(sender: Any, instance: Email, created: bool, **kwargs: Any) -> None:
            seen.append(("post", created, instance.pk is not None))

        pre_save.connect(before, sender=Email)
        post_save.connect(after, sender=Email)
        try:
            mail.send(["to@example.com"], SENDER, subject="s", message="m")
            DoNotSendEntry.objects.add("gone@example.com")
            mail.send(["to@example.com", "gone@example.com"], SENDER, subject="s", message="m")
        finally:
            pre_save.disconnect(before, sender=Email)
            post_save.disconnect(after, sender=Email)
        self.assertEqual(seen, [("pre", None), ("post", True, True)] * 2)


class ListedRecipientTest(TestCase):
    def test_a_listed_recipient_inserts_nothing_then_the_ordinary_path_takes_it_off(self):
        DoNotSendEntry.objects.add("Gone@Example.com")
        with CaptureQueriesContext(connection) as queries:
            email = mail.send(["ann@example.com", "gone@example.com"], SENDER, subject="s", message="m")
        self.assertEqual(Email.objects.count(), 1)
        self.assertEqual(Email.objects.get(pk=email.pk).to, ["ann@example.com"])
        self.assertEqual(Log.objects.filter(email=email, exception_type="DoNotSend").count(), 1)
        # The one-statement attempt, then the list read, the insert and the Log rows.
        self.assertIn("NOT EXISTS", queries.captured_queries[0]["sql"])

    def test_nobody_left_is_stored_failed_and_not_announced(self):
        DoNotSendEntry.objects.add("gone@example.com")
        announced: list[Any] = []

        def receiver(sender: Any, emails: list[Email], **kwargs: Any) -> None:
            announced.extend(emails)

        email_queued.connect(receiver)
        try:
            with self.captureOnCommitCallbacks(execute=True):
                email = mail.send(["gone@example.com"], SENDER, subject="s", message="m")
        finally:
            email_queued.disconnect(receiver)
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.failed)
        self.assertEqual(announced, [])

    def test_any_recipient_field_is_checked(self):
        DoNotSendEntry.objects.add("hidden@example.com")
        email = mail.send(["ann@example.com"], SENDER, bcc=["hidden@example.com"], subject="s", message="m")
        self.assertEqual(Email.objects.get(pk=email.pk).bcc, [])

    def test_without_a_plan_django_saves_it(self):
        with mock.patch.object(insert, "plan_for", return_value=None):
            email = mail.send(["to@example.com"], SENDER, subject="fallback", message="m")
            many = mail.send_many([{"recipients": ["a@example.com"], "sender": SENDER, "subject": "m"}] * 3)
        self.assertEqual(Email.objects.get(pk=email.pk).subject, "fallback")
        self.assertEqual(len({e.pk for e in many}), 3)


class SendManyRowsTest(TestCase):
    def test_ids_come_back_in_order(self):
        emails = mail.send_many(
            [{"recipients": [f"u{n}@example.com"], "sender": SENDER, "subject": f"n{n}"} for n in range(250)]
        )
        self.assertEqual([Email.objects.get(pk=e.pk).subject for e in emails], [f"n{n}" for n in range(250)])
        self.assertTrue(all(not e._state.adding for e in emails))

    def test_rows_are_the_rows_bulk_create_writes(self):
        items = [varied(subject=f"s{n}") for n in range(3)]
        ours = mail.send_many(items)
        requests = [EmailRequest(**kwargs) for kwargs in items]
        lookup = lookup_for(requests)
        theirs = [prepare(request, lookup).email for request in requests]
        Email.objects.bulk_create(theirs)
        self.assertEqual([stored(e) for e in ours], [stored(e) for e in theirs])


class AutocommitTest(TransactionTestCase):
    def test_one_round_trip_per_send_in_autocommit(self):
        with CaptureQueriesContext(connection) as queries:
            for n in range(3):
                mail.send(["to@example.com"], SENDER, subject=f"n{n}", message="m")
        self.assertEqual(len(queries.captured_queries), 3)
        self.assertEqual(Email.objects.count(), 3)

    def test_a_failed_insert_in_a_transaction_marks_it_for_rollback(self):
        plan = insert.plan_for("default")
        assert plan is not None
        with transaction.atomic():
            with mock.patch.object(type(plan), "row", side_effect=lambda email: [None] * len(plan.columns)):
                with self.assertRaises(Exception), transaction.atomic():
                    mail.send(["to@example.com"], SENDER, subject="x", message="m")
            mail.send(["to@example.com"], SENDER, subject="kept", message="m")
        self.assertEqual(list(Email.objects.values_list("subject", flat=True)), ["kept"])


class SharedContextTest(TestCase):
    """The three parts share one template context, each in a layer of its own."""

    def test_what_one_part_sets_is_gone_for_the_next(self):
        email = mail.send(
            ["to@example.com"],
            SENDER,
            subject='{% firstof "from the subject" as note %}{{ note }}',
            message="[{{ note }}]{% firstof 'from the message' as note %}",
            html_message="<p>[{{ note }}] {{ name }}</p>",
            context={"name": "Ann"},
        )
        self.assertEqual((email.subject, email.message), ("from the subject", "[]"))
        self.assertEqual(email.html_message, "<p>[] Ann</p>")

    def test_autoescape_per_part(self):
        email = mail.send(
            ["to@example.com"],
            SENDER,
            subject="{{ v }}",
            message="{{ v }}",
            html_message="{{ v }}",
            context={"v": "<&>"},
        )
        self.assertEqual((email.subject, email.message, email.html_message), ("<&>", "<&>", "&lt;&amp;&gt;"))


@unittest.skipUnless(POSTGRES and insert.plan_for("default").copy_sql, "PostgreSQL with psycopg 3: send_many's COPY")
class CopyTest(TestCase):
    """send_many on PostgreSQL: ids from the sequence, then the rows in one COPY."""

    def items(self, count: int) -> list[dict[str, Any]]:
        return [varied(subject=f"s{n}", context={"n": n}, message="{{ n }}") for n in range(count)]

    def test_rows_are_the_rows_bulk_create_writes(self):
        items = self.items(insert._COPY_MIN + 1)
        with CaptureQueriesContext(connection) as queries:
            ours = mail.send_many(items)
        statements = [q["sql"] for q in queries.captured_queries]
        self.assertTrue(any(sql.startswith("COPY ") for sql in statements), statements)
        requests = [EmailRequest(**kwargs) for kwargs in items]
        lookup = lookup_for(requests)
        theirs = [prepare(request, lookup).email for request in requests]
        Email.objects.bulk_create(theirs)
        self.assertEqual([stored(e) for e in ours], [stored(e) for e in theirs])
        self.assertEqual([e.pk for e in ours], sorted(e.pk for e in ours))

    def test_a_few_rows_take_one_insert(self):
        with CaptureQueriesContext(connection) as queries:
            mail.send_many(self.items(insert._COPY_MIN - 1))
        self.assertFalse(any(q["sql"].startswith("COPY ") for q in queries.captured_queries))

    def test_execute_wrappers_see_the_copy(self):
        seen: list[str] = []

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            seen.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(wrapper):
            emails = mail.send_many(self.items(10))
        self.assertEqual(sum(sql.startswith("COPY ") for sql in seen), 1, seen)
        self.assertEqual(Email.objects.filter(pk__in=[e.pk for e in emails]).count(), 10)

    def test_without_a_sequence_the_insert_is_used(self):
        # pg_get_serial_sequence of an id column that has none: NULL.
        no_sequence = insert._IDS_SQL.replace("pg_get_serial_sequence(%s, %s)", "(SELECT NULL::text WHERE %s <> %s)")
        with mock.patch.object(insert, "_IDS_SQL", no_sequence), CaptureQueriesContext(connection) as queries:
            emails = mail.send_many(self.items(6))
        self.assertFalse(any(q["sql"].startswith("COPY ") for q in queries.captured_queries))
        self.assertEqual(Email.objects.filter(pk__in=[e.pk for e in emails]).count(), 6)

    def test_a_failed_copy_raises_a_database_error_and_stores_nothing(self):
        plan = insert.plan_for("default")

        def short_rows(emails: Any, ids: Any) -> Any:
            return ([pk] for pk in ids)  # the id only: the other columns are missing

        before = Email.objects.count()
        with mock.patch.object(plan, "copy_rows", short_rows), self.assertRaises(DatabaseError):
            mail.send_many(self.items(6))
        self.assertEqual(Email.objects.count(), before)
