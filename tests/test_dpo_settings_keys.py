"""django-post_office 3.12's POST_OFFICE keys: read the same, or recognised and said to be unneeded once.

django-post_office 3.12 reads BACKENDS, EMAIL_BACKEND (its old spelling of
BACKENDS['default']), DEFAULT_MAILER, BATCH_SIZE, CELERY_ENABLED, LOCK_FILE_NAME,
THREADS_PER_PROCESS, DEFAULT_PRIORITY, LOG_LEVEL, SENDING_ORDER, TEMPLATE_ENGINE,
OVERRIDE_RECIPIENTS, MAX_RETRIES, RETRY_INTERVAL, MESSAGE_ID_ENABLED,
MESSAGE_ID_FQDN, BATCH_DELIVERY_TIMEOUT, FILE_STORAGE, CONTEXT_FIELD_CLASS and
WEBHOOKS, and the top-level POST_OFFICE_CACHE and POST_OFFICE_TEMPLATE_CACHE.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.core import checks
from django.core import mail as django_mail
from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings

from post_office import mail
from post_office.checks import RETIRED_KEYS, check_settings
from post_office.conf import KNOWN_KEYS
from post_office.conf import settings as po_settings
from post_office.delivery import Worker
from post_office.models import STATUS, Email
from tests.backends import RecordingBackend
from tests.helpers import DJANGO_61, LOCMEM, QUEUE

ROOT = Path(__file__).resolve().parent.parent
RECORDING = "tests.backends.RecordingBackend"
#: Every POST_OFFICE key django-post_office 3.12's settings module reads.
DPO_KEYS = {
    "BACKENDS",
    "EMAIL_BACKEND",
    "DEFAULT_MAILER",
    "BATCH_SIZE",
    "CELERY_ENABLED",
    "LOCK_FILE_NAME",
    "THREADS_PER_PROCESS",
    "DEFAULT_PRIORITY",
    "LOG_LEVEL",
    "SENDING_ORDER",
    "TEMPLATE_ENGINE",
    "OVERRIDE_RECIPIENTS",
    "MAX_RETRIES",
    "RETRY_INTERVAL",
    "MESSAGE_ID_ENABLED",
    "MESSAGE_ID_FQDN",
    "BATCH_DELIVERY_TIMEOUT",
    "FILE_STORAGE",
    "CONTEXT_FIELD_CLASS",
    "WEBHOOKS",
}
RETIRED = {
    "LOCK_FILE_NAME": "custom_lock_file",
    "CONTEXT_FIELD_CLASS": "picklefield.fields.PickledObjectField",
    "WEBHOOKS": {"SES": {"VERIFY_SIGNATURE": True}},
}


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def base_settings() -> dict:
    return {"BACKENDS": {"default": "smtp"}} if DJANGO_61 else {"BACKENDS": {"default": LOCMEM}}


class EveryKeyIsRecognisedTest(TestCase):
    def test_every_django_post_office_key_is_read_or_retired(self):
        self.assertEqual(DPO_KEYS - KNOWN_KEYS - RETIRED_KEYS.keys(), set())
        self.assertEqual(KNOWN_KEYS & RETIRED_KEYS.keys(), set())

    def test_a_django_post_office_configuration_gets_no_spelling_hint(self):
        """Every key with a value from django-post_office's README: nothing is reported as unknown."""
        values = {
            "BATCH_SIZE": 100,
            "CELERY_ENABLED": False,
            "THREADS_PER_PROCESS": 10,
            "DEFAULT_PRIORITY": "now",
            "LOG_LEVEL": 1,
            "SENDING_ORDER": ["created"],
            "OVERRIDE_RECIPIENTS": ["to@example.com"],
            "MAX_RETRIES": 4,
            "RETRY_INTERVAL": datetime.timedelta(minutes=15),
            "MESSAGE_ID_ENABLED": True,
            "MESSAGE_ID_FQDN": "example.com",
            "BATCH_DELIVERY_TIMEOUT": 180,
            "FILE_STORAGE": "default",
        }
        self.assertEqual(
            DPO_KEYS - values.keys() - RETIRED.keys(),
            {"BACKENDS", "EMAIL_BACKEND", "DEFAULT_MAILER", "TEMPLATE_ENGINE"},
        )
        with override_settings(POST_OFFICE={**base_settings(), **values, **RETIRED}):
            self.assertEqual(ids(check_settings()), ["post_office.W040", "post_office.W041", "post_office.W042"])


class RetiredKeysTest(TestCase):
    def test_each_retired_key_is_said_once_with_its_own_id_and_why(self):
        reasons = {"LOCK_FILE_NAME": "no lock file", "CONTEXT_FIELD_CLASS": "JSONField", "WEBHOOKS": "SparkPost"}
        for key, value in RETIRED.items():
            with self.subTest(key), override_settings(POST_OFFICE={**base_settings(), key: value}):
                [message] = check_settings()
                self.assertIsInstance(message, checks.Warning)
                self.assertEqual(message.id, RETIRED_KEYS[key][0])
                self.assertIn(f"POST_OFFICE[{key!r}] is not needed here", message.msg)
                self.assertIn(reasons[key], message.msg)
                self.assertEqual(message.hint, f"Remove {key!r} from POST_OFFICE.")

    def test_together_and_beside_a_misspelled_key(self):
        with override_settings(POST_OFFICE={**base_settings(), **RETIRED, "BATCHSIZE": 5}):
            messages = check_settings()
        self.assertEqual(
            ids(messages), ["post_office.W001", "post_office.W040", "post_office.W041", "post_office.W042"]
        )
        self.assertIn("BATCHSIZE", messages[0].msg)
        self.assertEqual(len(set(ids(messages))), 4)

    def test_registered_with_django(self):
        with override_settings(POST_OFFICE={**base_settings(), "LOCK_FILE_NAME": "x"}):
            self.assertEqual(ids(checks.run_checks(tags=["post_office"])), ["post_office.W040"])


class LegacyEmailBackendTest(TestCase):
    """POST_OFFICE['EMAIL_BACKEND']: django-post_office reads it as the default backend when BACKENDS is empty."""

    def setUp(self):
        RecordingBackend.reset()

    @override_settings(POST_OFFICE={"EMAIL_BACKEND": RECORDING})
    def test_read_as_the_default_backend_without_backends(self):
        self.assertEqual(po_settings.BACKENDS["default"], RECORDING)
        messages = check_settings()
        self.assertIn("post_office.W043", ids(messages))
        self.assertNotIn("post_office.W001", ids(messages))
        [warning] = [m for m in messages if m.id == "post_office.W043"]
        self.assertIn(f"read as POST_OFFICE['BACKENDS']['default'] = {RECORDING!r}", warning.msg)
        mail.send("to@example.com", "from@example.com", subject="legacy", message="m")
        Worker().run()
        self.assertEqual([m.subject for m in RecordingBackend.sent], ["legacy"])
        self.assertEqual(Email.objects.get().status, STATUS.sent)

    def test_ignored_beside_backends(self):
        with override_settings(POST_OFFICE={**base_settings(), "EMAIL_BACKEND": RECORDING}):
            self.assertNotEqual(po_settings.BACKENDS["default"], RECORDING)
            [message] = check_settings()
        self.assertEqual(message.id, "post_office.W043")
        self.assertIn("is not needed here", message.msg)

    def test_checked_like_a_backend(self):
        with override_settings(POST_OFFICE={"EMAIL_BACKEND": QUEUE}):
            self.assertIn("post_office.E002", ids(check_settings()))
        with override_settings(POST_OFFICE={"EMAIL_BACKEND": "nowhere.EmailBackend"}):
            self.assertIn("post_office.E003", ids(check_settings()))


class DefaultMailerTest(TestCase):
    """DEFAULT_MAILER (django-post_office 3.12): the alias email that names no backend is delivered through."""

    def setUp(self):
        RecordingBackend.reset()

    def test_a_backends_alias(self):
        backends = {"default": "tests.backends.ScriptedBackend", "bulk": RECORDING}
        with override_settings(POST_OFFICE={"BACKENDS": backends, "DEFAULT_MAILER": "bulk"}):
            self.assertEqual(po_settings.BACKENDS["default"], RECORDING)
            # (Django 6.1 with the test settings' MAILERS: W002 says to make these paths MAILERS entries.)
            self.assertEqual([i for i in ids(check_settings()) if i != "post_office.W002"], [])
            mail.send("to@example.com", "from@example.com", subject="through bulk", message="m")
            Worker().run()
        self.assertEqual([m.subject for m in RecordingBackend.sent], ["through bulk"])

    def test_default_means_unset(self):
        with override_settings(POST_OFFICE={**base_settings(), "DEFAULT_MAILER": "default"}):
            self.assertEqual(po_settings.BACKENDS, {**base_settings()["BACKENDS"]})
            self.assertEqual(check_settings(), [])

    def test_a_mailers_alias_on_django_61(self):
        if not DJANGO_61:
            self.skipTest("MAILERS is Django 6.1's")
        mailers = {"default": {"BACKEND": QUEUE}, "transport": {"BACKEND": LOCMEM}}
        with override_settings(MAILERS=mailers, POST_OFFICE={"DEFAULT_MAILER": "transport"}):
            self.assertEqual(check_settings(), [])  # no E004: the default delivery alias is named
            mail.send("to@example.com", "from@example.com", subject="via MAILERS", message="m")
            Worker().run()
        self.assertEqual([m.subject for m in django_mail.outbox], ["via MAILERS"])

    def test_names_no_delivery_backend(self):
        for value, text in (
            ("nowhere", "is neither an alias in POST_OFFICE['BACKENDS'] nor a MAILERS alias"),
            (["bulk"], "must be the name of a delivery alias"),
        ):
            with self.subTest(value), override_settings(POST_OFFICE={**base_settings(), "DEFAULT_MAILER": value}):
                messages = check_settings()
                self.assertEqual(ids(messages), ["post_office.E044"])
                self.assertIn(text, messages[0].msg)
        if DJANGO_61:
            with override_settings(POST_OFFICE={"DEFAULT_MAILER": "default"}, MAILERS={"default": {"BACKEND": QUEUE}}):
                self.assertIn("post_office.E004", ids(check_settings()))


class TemplateCacheSwitchTest(TestCase):
    def test_either_top_level_switch_turns_caching_off(self):
        self.assertTrue(po_settings.TEMPLATE_CACHE)
        with override_settings(POST_OFFICE_TEMPLATE_CACHE=False):
            self.assertFalse(po_settings.TEMPLATE_CACHE)
        with override_settings(POST_OFFICE_CACHE=False):
            self.assertFalse(po_settings.TEMPLATE_CACHE)
        with override_settings(POST_OFFICE_TEMPLATE_CACHE=False, POST_OFFICE={"TEMPLATE_CACHE": True}):
            self.assertTrue(po_settings.TEMPLATE_CACHE)  # the key of the dict wins


class ManagePyTest(TransactionTestCase):
    """As a user meets them: ``manage.py check`` and a cron run of ``send_queued_mail`` in a real process."""

    def manage(self, tmp: Path, post_office: dict, *args: str) -> subprocess.CompletedProcess[str]:
        (tmp / "dpo_keys_settings.py").write_text(
            f"from tests.settings import *  # noqa: F403\nPOST_OFFICE = {{**POST_OFFICE, **{post_office!r}}}\n"
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dpo_keys_settings",
            "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
        }
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    def test_check_names_each_retired_key_once(self):
        with tempfile.TemporaryDirectory() as scratch:
            result = self.manage(Path(scratch), {**RETIRED, "BATCHSIZE": 5}, "check")
            clean = self.manage(Path(scratch), {}, "check")
        self.assertEqual(result.returncode, 0, result.stderr)  # warnings do not stop a command
        for key, (check_id, _why) in RETIRED_KEYS.items():
            self.assertEqual(result.stderr.count(f"({check_id}) POST_OFFICE[{key!r}] is not needed here"), 1)
        self.assertEqual(result.stderr.count("post_office.W001"), 1)  # only the misspelled key
        self.assertIn("POST_OFFICE['BATCHSIZE'] is not a post_office setting", result.stderr)
        self.assertIn("System check identified 4 issues", result.stderr)
        self.assertEqual(clean.returncode, 0, clean.stderr)
        self.assertNotIn("post_office.W", clean.stderr)

    def test_send_queued_mail_says_it_once_and_delivers(self):
        mail.send("to@example.com", "from@example.com", subject="cron", message="m")
        with tempfile.TemporaryDirectory() as scratch:
            result = self.manage(Path(scratch), {"LOCK_FILE_NAME": "post_office"}, "send_queued_mail")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.count("post_office.W040"), 1)
        self.assertNotIn("W001", result.stderr)
        self.assertEqual(Email.objects.get().status, STATUS.sent)
