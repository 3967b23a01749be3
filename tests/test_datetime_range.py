"""A date or time that would leave years 1-9999 once stored in UTC is refused with a clear error (issue 10, 2)."""

from __future__ import annotations

import datetime

from django.core.mail import EmailMessage
from django.test import TestCase, override_settings

from post_office import mail, queue_options
from post_office.exceptions import InvalidSchedule
from post_office.models import Email

WEST = datetime.timezone(datetime.timedelta(hours=-5))
EAST = datetime.timezone(datetime.timedelta(hours=9))


class DatetimeRangeTest(TestCase):
    def send(self, **fields):
        return mail.send(["a@example.com"], "s@example.com", subject="S", message="B", **fields)

    def test_values_that_overflow_in_utc_are_refused_on_every_path(self):
        cases = [
            ("America/New_York", {"expires_at": datetime.datetime(9999, 12, 31, 23, 0)}),
            ("Asia/Tokyo", {"scheduled_time": datetime.datetime.min}),
            ("UTC", {"expires_at": datetime.datetime(9999, 12, 31, 23, 0, tzinfo=WEST)}),
            ("UTC", {"scheduled_time": datetime.datetime(1, 1, 1, 1, 0, tzinfo=EAST)}),
            ("Asia/Tokyo", {"scheduled_time": datetime.date.min}),
        ]
        for zone, fields in cases:
            field = next(iter(fields))
            with self.subTest(zone=zone, fields=fields), override_settings(TIME_ZONE=zone):
                with self.assertRaises(InvalidSchedule) as sent:
                    self.send(**fields)
                self.assertEqual(sent.exception.field, field)
                self.assertIn("years 1 to 9999", str(sent.exception))
                with self.assertRaises(InvalidSchedule) as many:
                    mail.send_many([{"recipients": ["a@example.com"], "subject": "S", **fields}])
                self.assertEqual(many.exception.field, f"kwargs_list[0].{field}")
                with self.assertRaises(InvalidSchedule):
                    queue_options(EmailMessage("S", "B", "s@example.com", ["a@example.com"]), **fields)
        self.assertEqual(Email.objects.count(), 0)

    @override_settings(TIME_ZONE="America/New_York")
    def test_the_last_hours_that_fit_are_kept_and_read_back(self):
        email = self.send(expires_at=datetime.datetime(9999, 12, 31, 18, 0))
        self.assertEqual(Email.objects.get(pk=email.pk).expires_at, email.expires_at)
