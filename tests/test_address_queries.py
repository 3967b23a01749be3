"""Queries on Email.to/cc/bcc written for django-post_office's text column still answer the same."""

from __future__ import annotations

from django.test import TestCase

from post_office import mail
from post_office.models import Email


class AddressQueriesTest(TestCase):
    def setUp(self) -> None:
        self.ann = mail.send("ann@example.com", "shop@example.com", subject="1", message="x")
        self.two = mail.send(["ann@example.com", "bob@example.com"], "shop@example.com", subject="2", message="x")
        self.doe = mail.send(
            ['"Doe, John" <john@example.com>'],
            "shop@example.com",
            subject="3",
            message="x",
            cc=["Jürgen Groß <jg@example.com>"],
        )

    def ids(self, **lookup) -> set[int]:
        return set(Email.objects.filter(**lookup).values_list("pk", flat=True))

    def test_exact_text_is_the_list_of_those_addresses(self):
        self.assertEqual(self.ids(to="ann@example.com"), {self.ann.pk})
        self.assertEqual(self.ids(to="ann@example.com, bob@example.com"), {self.two.pk})
        self.assertEqual(self.ids(to='"Doe, John" <john@example.com>'), {self.doe.pk})
        self.assertEqual(self.ids(to="nobody@example.com"), set())
        self.assertEqual(self.ids(to=["ann@example.com"]), {self.ann.pk})

    def test_contains_text_searches_the_addresses(self):
        self.assertEqual(self.ids(to__contains="ann@example.com"), {self.ann.pk, self.two.pk})
        self.assertEqual(self.ids(to__contains="bob@"), {self.two.pk})
        self.assertEqual(self.ids(to__contains='"Doe, John"'), {self.doe.pk})
        self.assertEqual(self.ids(cc__contains="Jürgen Groß"), {self.doe.pk})
        self.assertEqual(self.ids(to__icontains="ANN@example.com"), {self.ann.pk, self.two.pk})
        self.assertEqual(self.ids(to__contains="%"), set())  # a wildcard is a character here

    def test_excluding_and_combining_work_too(self):
        self.assertEqual(set(Email.objects.exclude(to__contains="ann@").values_list("pk", flat=True)), {self.doe.pk})
        self.assertEqual(self.ids(to__contains="ann@", cc=[]), {self.ann.pk, self.two.pk})
