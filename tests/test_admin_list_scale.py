"""The email and log lists stay fast with millions of rows (issue 11, 1).

What a million rows would cost is in benchmarks/RESULTS.md (benchmarks/admin_list.py);
these tests pin what makes it so: a fixed number of queries per page, no count of
every row, and an index behind every filter.
"""

from __future__ import annotations

import datetime
import unittest
from typing import Any
from unittest import mock

from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from post_office import mail
from post_office.admin.emails import EmailAdmin
from post_office.admin.paging import EstimatedCountPaginator
from post_office.models import STATUS, Email, EmailTemplate, Log

LIST, LOGS = "/admin/post_office/email/", "/admin/post_office/log/"

custom_site = admin.AdminSite(name="custom_admin")
custom_site.register(Email, EmailAdmin)
urlpatterns = [path("custom/", custom_site.urls), path("admin/", admin.site.urls)]


def make_emails(count: int, templates: list[EmailTemplate]) -> None:
    """count emails over several templates, with several recipients each, and a delivery log."""
    for number in range(count):
        template = templates[number % len(templates)] if templates else None
        recipients = [f"user{number}@example.com", f"other{number}@example.com"]
        if template is not None:
            email = mail.send(recipients, "shop@example.com", template=template.name, context={"n": number})
        else:
            email = mail.send(recipients, "shop@example.com", subject=f"s{number}", message="m", cc=["c@example.org"])
        Log.objects.create(email_id=email.pk, status=STATUS.failed, exception_type=f"Error{number % 7}", message="x")


def every_filter() -> list[dict[str, str]]:
    template = EmailTemplate.objects.filter(language="").first()
    day = timezone.now().date()
    since, until = (
        f"{day - datetime.timedelta(days=7)} 00:00:00+00:00",
        f"{day + datetime.timedelta(days=1)} 00:00:00+00:00",
    )
    return [
        {},
        {"status__exact": "2"},
        {"priority__exact": "1"},
        {"template__id__exact": str(template.pk) if template else "1"},
        {"backend_alias": "default"},
        {"language": "-"},
        {"created__gte": since, "created__lt": until},
        {"scheduled_time__isnull": "True"},
        {"q": "user1"},
        {"p": "2"},
    ]


class QueriesPerPageTest(TestCase):
    """The number of queries of a page depends on neither the rows in the table nor those on the page."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.templates = [
            EmailTemplate.objects.create(name=f"t{number}", subject="Hi {{ n }}", content="c") for number in range(4)
        ]
        for template in self.templates[:2]:
            EmailTemplate.objects.create(name=template.name, language="de", default_template=template, subject="Hallo")

    def queries(self, url: str) -> dict[str, int]:
        counts = {}
        pages = (
            every_filter() if url == LIST else [{}, {"status__exact": "1"}, {"exception_type": "Error1"}, {"p": "2"}]
        )
        for params in pages:
            with CaptureQueriesContext(connection) as captured:
                response = self.client.get(url, params)
            self.assertEqual(response.status_code, 200, params)
            counts[str(params)] = len(captured)
        return counts

    def test_the_same_with_10_and_with_200_emails(self):
        make_emails(10, self.templates)
        few = self.queries(LIST), self.queries(LOGS)
        make_emails(190, self.templates)
        many = self.queries(LIST), self.queries(LOGS)
        self.assertEqual(few, many)
        # And small: session, user, the page, its capped count, the template filter's choices, the pause banner.
        self.assertLessEqual(max(many[0].values()), 10, many[0])

    def test_no_count_reads_every_row(self):
        make_emails(3, self.templates)
        with CaptureQueriesContext(connection) as captured:
            self.client.get(LIST)
        counts = [query["sql"] for query in captured if "COUNT(" in query["sql"].upper()]
        self.assertTrue(counts)
        for sql in counts:
            self.assertIn("LIMIT", sql.upper(), sql)
        # No DISTINCT over the emails either (a date hierarchy, or a filter listing the templates used).
        self.assertFalse(
            [q["sql"] for q in captured if "DISTINCT" in q["sql"].upper() and "post_office_email" in q["sql"]]
        )


class EstimatedCountTest(TestCase):
    """Past the exact count, the list says it shows an estimate."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        make_emails(30, [])

    def page(self, **params: str) -> Any:
        with mock.patch.object(EstimatedCountPaginator, "exact_up_to", 20):
            return self.client.get(LIST, {**params})

    def test_small_counts_are_exact(self):
        response = self.client.get(LIST)
        self.assertFalse(response.context["cl"].paginator.estimated)
        self.assertEqual(response.context["cl"].result_count, 30)
        self.assertNotIn("about", response.content.decode())

    @unittest.skipIf(connection.vendor == "sqlite", "SQLite has no estimate: it counts")
    def test_an_estimate_beyond_the_exact_count(self):
        response = self.page()
        cl = response.context["cl"]
        self.assertTrue(cl.paginator.estimated)
        self.assertGreater(cl.result_count, 20)
        self.assertIn(f"about {cl.paginator.about} emails", response.content.decode())
        searched = self.page(q="example.com")
        self.assertIn("about", searched.content.decode().split('id="changelist-search"')[1].split("</form>")[0])

    @unittest.skipUnless(connection.vendor == "sqlite", "the fallback of a database without estimates")
    def test_sqlite_counts_beyond_the_exact_count(self):
        response = self.page()
        self.assertFalse(response.context["cl"].paginator.estimated)
        self.assertEqual(response.context["cl"].result_count, 30)

    def test_rounded_for_people(self):
        paginator = EstimatedCountPaginator([], 100)
        paginator.count = 1_234_567  # type: ignore[misc]
        paginator.estimated = True
        self.assertEqual(paginator.about, "1,200,000")

    def test_pages_and_logs_work_past_the_exact_count(self):
        with mock.patch.object(EstimatedCountPaginator, "exact_up_to", 20):
            with mock.patch.object(EmailAdmin, "list_per_page", 10):
                response = self.client.get(LIST, {"p": "3"})
            self.assertEqual(response.status_code, 200)
            self.assertEqual(len(response.context["cl"].result_list), 10)
            self.assertEqual(self.client.get(LOGS, {"exception_type": "Error1"}).status_code, 200)

    @override_settings(ROOT_URLCONF=__name__)
    def test_with_a_custom_admin_site(self):
        response = self.client.get("/custom/post_office/email/", {"status__exact": "2"})
        self.assertEqual(response.status_code, 200)
        self.assertIsInstance(response.context["cl"].paginator, EstimatedCountPaginator)


class IndexBehindEveryFilterTest(TestCase):
    def test_every_filter_field_leads_an_index(self):
        leading = {index.fields[0] for index in Email._meta.indexes}
        leading |= {field.name for field in Email._meta.fields if field.db_index or field.is_relation}
        filtered = set()
        for entry in EmailAdmin.list_filter:
            if isinstance(entry, str):
                filtered.add(entry)
            elif isinstance(entry, tuple):
                filtered.add(entry[0])
            else:
                filtered.add(entry.parameter_name.split("__")[0])
        self.assertEqual(
            filtered, {"status", "priority", "template", "backend_alias", "language", "created", "scheduled_time"}
        )
        self.assertLessEqual(filtered, leading)

    @unittest.skipUnless(connection.vendor == "postgresql", "EXPLAIN plans of PostgreSQL")
    def test_postgres_uses_an_index_for_each_filter(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        EmailTemplate.objects.create(name="t", subject="s", content="c")
        make_emails(5, [])
        plans = {}
        for params in every_filter():
            if "q" in params or "p" in params:
                continue  # a search reads the text (benchmarks/RESULTS.md); a page is the unfiltered list
            queryset = self.client.get(LIST, params).context["cl"].queryset
            sql, sql_params = queryset.order_by("-pk")[:100].query.sql_with_params()
            with connection.cursor() as cursor:
                # With a handful of rows a sequential scan is cheapest: forbid it, so only a usable index avoids it.
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute(f"EXPLAIN {sql}", sql_params)
                plans[str(params)] = "\n".join(row[0] for row in cursor.fetchall())
                cursor.execute("SET LOCAL enable_seqscan = on")
        for params, plan in plans.items():
            self.assertNotIn("Seq Scan on post_office_email", plan, f"{params}\n{plan}")
