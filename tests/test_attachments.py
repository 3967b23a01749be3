"""Attachments (issue 10): nothing gets in that the project did not allow, nothing is lost.

Paths are read only inside ``ATTACHMENT_DIRS``; stored files have random
names; sizes are limited at enqueue; a file missing at delivery fails its
email for good; ``cleanup_mail --delete-attachments`` never deletes a row or
file that an email being queued reuses.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
import tracemalloc
import unittest
import uuid
from email.mime.base import MIMEBase
from pathlib import Path
from typing import Any
from unittest import mock

from django.conf import settings
from django.core import mail as django_mail
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage
from django.db import connection
from django.test import SimpleTestCase, TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import mail
from post_office.checks import check_settings
from post_office.conf import settings as po_settings
from post_office.delivery import Worker
from post_office.delivery.retry import is_permanent
from post_office.enqueue import attachments as attachments_module
from post_office.exceptions import AttachmentMissing, AttachmentTooLarge, InvalidAttachment, MessageTooLarge
from post_office.maintenance import delete_orphan_attachments
from post_office.models import STATUS, Attachment, Email, Log, get_attachment_storage
from tests.helpers import DJANGO_61, queueing

MiB = 1024 * 1024


def po(**extra: Any) -> Any:
    """POST_OFFICE as it is now, with ``extra`` keys."""
    from django.test import override_settings

    return override_settings(POST_OFFICE={**settings.POST_OFFICE, **extra})


def send(attachments: Any, **kwargs: Any) -> Email:
    kwargs.setdefault("message", "body")
    return mail.send("to@example.com", "from@example.com", attachments=attachments, **kwargs)


def stored_content(email: Email) -> dict[str, bytes]:
    return {a.name: a.file.storage.open(a.file.name, "rb").read() for a in email.attachments.all()}


class AttachmentPathTest(TestCase):
    """A path is read only under ATTACHMENT_DIRS, with links and '..' resolved first."""

    def setUp(self) -> None:
        root = os.path.realpath(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        self.allowed = os.path.join(root, "allowed")
        self.outside = os.path.join(root, "outside")
        # A sibling whose name starts like the allowed one: a prefix is not a parent.
        self.sibling = os.path.join(root, "allowed-not")
        for directory in (self.allowed, self.outside, self.sibling):
            os.mkdir(directory)
        self.report = self.write(self.allowed, "report.pdf", b"%PDF allowed")
        self.secret = self.write(self.outside, "secret.txt", b"not for mail")
        self.write(self.sibling, "secret.txt", b"not for mail either")
        os.symlink(self.secret, os.path.join(self.allowed, "link.txt"))
        os.symlink(self.outside, os.path.join(self.allowed, "linked-dir"))

    def write(self, directory: str, name: str, content: bytes) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(content)
        return path

    def assertRefused(self, attachments: Any, *words: str) -> InvalidAttachment:
        counts = Email.objects.count(), Attachment.objects.count()
        with self.assertRaises(InvalidAttachment) as caught:
            send(attachments)
        for word in words:
            self.assertIn(word, str(caught.exception))
        self.assertEqual((Email.objects.count(), Attachment.objects.count()), counts)  # nothing stored
        return caught.exception

    def test_by_default_no_path_is_read(self):
        self.assertEqual(po_settings.ATTACHMENT_DIRS, ())
        for path in ("/etc/passwd", self.report, "/proc/self/environ"):
            with self.subTest(path):
                error = self.assertRefused({"x.txt": path}, "POST_OFFICE['ATTACHMENT_DIRS']", "is a file path")
                self.assertEqual(error.field, "attachments['x.txt']")
        self.assertRefused({"x.txt": {"file": self.report, "mimetype": "application/pdf"}}, "ATTACHMENT_DIRS")

    def test_a_path_inside_an_allowed_directory_is_read(self):
        with po(ATTACHMENT_DIRS=[self.allowed]):
            email = send(
                {
                    "a.pdf": self.report,
                    "b.pdf": Path(self.report),
                    "c.pdf": {"file": self.report, "mimetype": "application/pdf"},
                    "d.pdf": os.path.join(self.allowed, ".", "report.pdf"),
                }
            )
        self.assertEqual(set(stored_content(email).values()), {b"%PDF allowed"})

    def test_paths_outside_are_refused_once_links_and_dots_are_resolved(self):
        cases = {
            "absolute": self.secret,
            "system file": "/etc/passwd",
            "dot-dot": os.path.join(self.allowed, "..", "outside", "secret.txt"),
            "link to a file": os.path.join(self.allowed, "link.txt"),
            "link to a directory": os.path.join(self.allowed, "linked-dir", "secret.txt"),
            "sibling with the same prefix": os.path.join(self.sibling, "secret.txt"),
            "the process environment": "/proc/self/environ",
        }
        with po(ATTACHMENT_DIRS=[self.allowed]):
            for label, path in cases.items():
                with self.subTest(label):
                    self.assertRefused({"x.txt": path}, "outside", "ATTACHMENT_DIRS")

    def test_a_directory_or_a_fifo_is_not_read(self):
        fifo = os.path.join(self.allowed, "pipe")
        os.mkfifo(fifo)
        self.unblock(fifo)
        with po(ATTACHMENT_DIRS=[self.allowed]):
            self.assertRefused({"x.txt": fifo}, "is not a regular file")  # and does not wait for a writer
            self.assertRefused({"x.txt": self.allowed}, "x.txt")
            self.assertRefused({"x.txt": os.path.join(self.allowed, "missing.txt")}, "cannot be read")

    def unblock(self, fifo: str) -> None:
        """Should a reader ever wait on the FIFO for a writer, be that writer (a failure, not a hung test)."""
        done = threading.Event()
        self.addCleanup(done.set)

        def write() -> None:
            while not done.wait(0.2):
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    continue  # no reader waiting

        threading.Thread(target=write, daemon=True).start()

    def test_a_tuple_holds_content_never_a_path(self):
        email = send(
            [
                ("passwd.txt", "/etc/passwd", "text/plain"),
                ("environ.txt", "/proc/self/environ"),
                ("café.txt", "Grüße", "text/plain"),
                ("data.bin", b"\x00\x01", "application/octet-stream"),
                ("file.bin", ContentFile(b"from a file"), "application/octet-stream"),
            ]
        )
        self.assertEqual(
            stored_content(email),
            {
                "passwd.txt": b"/etc/passwd",
                "environ.txt": b"/proc/self/environ",
                "café.txt": "Grüße".encode(),
                "data.bin": b"\x00\x01",
                "file.bin": b"from a file",
            },
        )
        with po(ATTACHMENT_DIRS=[self.allowed]):
            self.assertRefused([("x.pdf", Path(self.report), "application/pdf")], "pass paths in a dict")

    def test_the_setting_must_hold_absolute_directories(self):
        for value in (["relative/dir"], [3], {"a": 1}):
            with self.subTest(value), po(ATTACHMENT_DIRS=value):
                with self.assertRaisesMessage(ImproperlyConfigured, "POST_OFFICE['ATTACHMENT_DIRS']"):
                    po_settings.ATTACHMENT_DIRS
                self.assertIn("post_office.E014", [message.id for message in check_settings()])
        with po(ATTACHMENT_DIRS=self.allowed):  # one directory as a string
            self.assertEqual(po_settings.ATTACHMENT_DIRS, (self.allowed,))
            self.assertNotIn("post_office.E014", [message.id for message in check_settings()])


class PrivateStorageTest(TestCase):
    """Files are stored under random names; the content hash stays in the database, for de-duplication."""

    NAME = re.compile(r"^post_office_attachments/[0-9a-f]{2}/[0-9a-f]{32}$")

    def test_a_file_name_tells_nothing_of_its_content(self):
        content = b"%PDF invoice " + uuid.uuid4().bytes
        digest = hashlib.sha256(content).hexdigest()
        email = send({"invoice-2024.pdf": content})
        attachment = email.attachments.get()
        self.assertEqual(attachment.content_hash, digest)
        self.assertRegex(attachment.file.name, self.NAME)
        self.assertNotIn(digest[:16], attachment.file.name)
        self.assertNotIn("invoice", attachment.file.name)

    def test_identical_content_is_still_stored_once(self):
        content = uuid.uuid4().bytes
        first = send({"a.bin": content})
        emails = mail.send_many(
            [
                {"recipients": ["x@example.com"], "message": "m", "attachments": {"a.bin": content}},
                {"recipients": ["y@example.com"], "message": "m", "attachments": {"b.bin": content}},
                {"recipients": ["z@example.com"], "message": "m", "attachments": {"c.bin": uuid.uuid4().bytes}},
            ]
        )
        names = {email.attachments.get().file.name for email in [first, *emails]}
        self.assertEqual(len(names), 2)  # the same content in one file, the other content in its own
        self.assertEqual(Attachment.objects.filter(content_hash=hashlib.sha256(content).hexdigest()).count(), 2)
        self.assertEqual(emails[0].attachments.get(), first.attachments.get())


class SizeLimitTest(TestCase):
    """MAX_ATTACHMENT_SIZE and MAX_MESSAGE_SIZE, checked at enqueue on every path, before a file is read."""

    def test_defaults(self):
        self.assertEqual(po_settings.MAX_ATTACHMENT_SIZE, 20 * MiB)
        self.assertEqual(po_settings.MAX_MESSAGE_SIZE, 25 * MiB)

    def assertTooLarge(self, error_class: type, call: Any, *words: str) -> Any:
        with self.assertRaises(error_class) as caught:
            call()
        for word in words:
            self.assertIn(word, str(caught.exception))
        self.assertIsInstance(caught.exception, ValueError)
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Attachment.objects.exists())
        return caught.exception

    def test_every_kind_of_content_over_the_limit_is_refused(self):
        big = b"x" * 1001
        cases = {
            "bytes": {"big.bin": big},
            "file": {"big.bin": ContentFile(big)},
            "dict": {"big.bin": {"file": big, "mimetype": "application/pdf"}},
            "stream": {"big.bin": io.BufferedReader(io.BytesIO(big))},
            "text in a tuple": [("big.txt", "é" * 501, "text/plain")],
        }
        with po(MAX_ATTACHMENT_SIZE=1000):
            for label, attachments in cases.items():
                with self.subTest(label):
                    name = next(iter(attachments)) if isinstance(attachments, dict) else attachments[0][0]
                    error = self.assertTooLarge(
                        AttachmentTooLarge,
                        lambda attachments=attachments: send(attachments),
                        "MAX_ATTACHMENT_SIZE",
                        "(1000 bytes)",
                    )
                    self.assertEqual(error.field, f"attachments[{name!r}]")
                    self.assertRegex(str(error), r"is (at least )?100\d bytes")
            send({"fits.bin": b"x" * 1000})

    def test_a_file_of_known_size_is_refused_before_it_is_read(self):
        directory = os.path.realpath(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "huge.bin")
        with open(path, "wb") as handle:
            handle.truncate(64 * MiB)  # sparse: 64 MiB that reading would allocate

        class Unreadable(io.RawIOBase):
            size = 64 * MiB

            def read(self, size: int = -1) -> bytes:
                raise AssertionError("read although its size is known")

        with po(ATTACHMENT_DIRS=[directory]):
            tracemalloc.start()
            try:
                self.assertTooLarge(AttachmentTooLarge, lambda: send({"huge.bin": path}), "67108864 bytes")
                self.assertTooLarge(AttachmentTooLarge, lambda: send({"huge.bin": Unreadable()}), "67108864 bytes")
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        self.assertLess(peak, 4 * MiB)

    def test_a_stream_of_unknown_size_is_read_no_further_than_the_limit(self):
        class Endless(io.RawIOBase):
            served = 0

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                if self.served > 64 * MiB:
                    return 0  # an end, so that code reading it all does not run forever
                buffer[:] = b"y" * len(buffer)
                self.served += len(buffer)
                return len(buffer)

        stream = Endless()
        with po(MAX_ATTACHMENT_SIZE=3 * MiB):
            self.assertTooLarge(AttachmentTooLarge, lambda: send({"endless.bin": stream}), "more than")
        self.assertLessEqual(stream.served, 5 * MiB)

    def test_the_whole_message_is_limited(self):
        with po(MAX_ATTACHMENT_SIZE=800, MAX_MESSAGE_SIZE=1000):
            error = self.assertTooLarge(
                MessageTooLarge,
                lambda: send({"a.bin": b"a" * 600, "b.bin": b"b" * 600}, subject="s", message="body"),
                "1205 bytes",
                "MAX_MESSAGE_SIZE",
                "(1000 bytes)",
            )
            self.assertEqual(error.field, "attachments")
            error = self.assertTooLarge(MessageTooLarge, lambda: send(None, html_message="é" * 501), "1006 bytes")
            self.assertEqual(error.field, "message")
            send({"a.bin": b"a" * 600}, message="body")

    def test_send_many_names_the_item(self):
        items = [
            {"recipients": ["a@example.com"], "message": "m"},
            {"recipients": ["b@example.com"], "message": "m", "attachments": {"big.bin": b"x" * 1001}},
        ]
        with po(MAX_ATTACHMENT_SIZE=1000):
            error = self.assertTooLarge(AttachmentTooLarge, lambda: mail.send_many(items))
        self.assertEqual(error.field, "kwargs_list[1].attachments['big.bin']")

    def test_django_messages_are_limited_too(self):
        part = MIMEBase("application", "pdf")
        part.set_payload(b"p" * 1001)
        part.add_header("Content-Disposition", "attachment", filename="part.pdf")
        with queueing(MAX_ATTACHMENT_SIZE=1000, MAX_MESSAGE_SIZE=1500):
            for label, attach, field in [
                ("tuple", ("big.bin", b"x" * 1001, "application/octet-stream"), "messages[0].attachments['big.bin']"),
                ("MIME part", (part,), "messages[0].attachments['part.pdf']"),
            ]:
                with self.subTest(label):
                    message = EmailMessage("s", "body", "from@example.com", ["to@example.com"])
                    message.attach(*attach)
                    error = self.assertTooLarge(AttachmentTooLarge, message.send, "MAX_ATTACHMENT_SIZE")
                    self.assertEqual(error.field, field)
            message = EmailMessage("s", "body", "from@example.com", ["to@example.com"])
            message.attach("a.bin", b"a" * 900, "application/octet-stream")
            message.attach("b.bin", b"b" * 900, "application/octet-stream")
            error = self.assertTooLarge(MessageTooLarge, message.send, "MAX_MESSAGE_SIZE")
            self.assertEqual(error.field, "messages[0].attachments")

    def test_none_turns_the_limits_off(self):
        with po(MAX_ATTACHMENT_SIZE=None, MAX_MESSAGE_SIZE=None):
            send({"big.bin": b"x" * (26 * MiB)})
        self.assertEqual(Attachment.objects.count(), 1)

    def test_the_settings_must_be_sizes(self):
        for key in ("MAX_ATTACHMENT_SIZE", "MAX_MESSAGE_SIZE"):
            for value in (0, -5, "20MB", 1.5, True):
                with self.subTest(key=key, value=value), po(**{key: value}):
                    with self.assertRaisesMessage(ImproperlyConfigured, f"POST_OFFICE[{key!r}]"):
                        getattr(po_settings, key)
                    self.assertIn("post_office.E015", [message.id for message in check_settings()])


class MissingFileAtDeliveryTest(TestCase):
    """A file deleted from the storage will not come back: the email fails at once, with a Log row naming it."""

    def setUp(self) -> None:
        settings_override = po(BACKENDS={"default": "django.core.mail.backends.locmem.EmailBackend"}, MAX_RETRIES=5)
        settings_override.enable()
        self.addCleanup(settings_override.disable)

    def test_a_missing_file_fails_the_email_for_good(self):
        email = send({"report.pdf": b"%PDF " + uuid.uuid4().bytes})
        attachment = email.attachments.get()
        get_attachment_storage().delete(attachment.file.name)
        stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 1, 0))
        email.refresh_from_db()
        self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 0))
        log = Log.objects.get(email=email)
        self.assertEqual(log.exception_type, "AttachmentMissing")
        self.assertIn("'report.pdf'", log.message)
        self.assertIn(attachment.file.name, log.message)
        self.assertEqual(django_mail.outbox, [])
        self.assertTrue(is_permanent(AttachmentMissing("a", "b", "default")))

    def test_a_storage_out_of_reach_is_not_a_missing_file(self):
        email = send({"report.pdf": b"%PDF " + uuid.uuid4().bytes})
        with mock.patch.object(
            type(get_attachment_storage()), "open", side_effect=ConnectionError("storage unreachable")
        ):
            stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 0, 1))
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.requeued)


class FullDiskAtEnqueueTest(TestCase):
    """The storage cannot write (a full disk): the caller gets the error and nothing is stored half-way."""

    def test_no_email_is_queued_without_its_attachments(self):
        full = OSError(28, "No space left on device")
        before = (Email.objects.count(), Attachment.objects.count())
        with mock.patch.object(type(get_attachment_storage()), "save", side_effect=full):
            with self.assertRaises(OSError) as caught:
                send({"a.txt": b"first " + uuid.uuid4().bytes, "b.txt": b"second " + uuid.uuid4().bytes})
            with self.assertRaises(OSError):
                mail.send_many(
                    [
                        {"recipients": ["a@example.com"], "subject": "ok", "message": "m"},
                        {"recipients": ["b@example.com"], "attachments": {"c.txt": uuid.uuid4().bytes}},
                    ]
                )
        self.assertEqual(caught.exception.errno, 28)
        # Neither the email that could not store its files nor its batch neighbours are queued.
        self.assertEqual((Email.objects.count(), Attachment.objects.count()), before)


def age(attachment: Attachment, **delta: float) -> None:
    Attachment.objects.filter(pk=attachment.pk).update(last_used=timezone.now() - datetime.timedelta(**delta))


def orphan(content: bytes, name: str = "terms.pdf", **old: float) -> Attachment:
    """A stored attachment that no email uses any more, last used ``old`` ago."""
    email = send({name: content})
    attachment = email.attachments.get()
    Email.objects.filter(pk=email.pk).delete()
    age(attachment, **(old or {"days": 2}))
    return attachment


class OrphanCleanupTest(TestCase):
    """Orphans are deleted after a grace period, each batch by one conditional DELETE."""

    def cleanup(self) -> int:
        with self.captureOnCommitCallbacks(execute=True):
            return delete_orphan_attachments()

    def test_only_orphans_past_the_grace_period_go(self):
        old = orphan(uuid.uuid4().bytes, days=2)
        recent = orphan(uuid.uuid4().bytes, hours=2)
        used = send({"used.pdf": uuid.uuid4().bytes}).attachments.get()
        age(used, days=30)
        self.assertEqual(self.cleanup(), 1)
        self.assertEqual(set(Attachment.objects.all()), {recent, used})
        storage = get_attachment_storage()
        self.assertFalse(storage.exists(old.file.name))
        self.assertTrue(storage.exists(recent.file.name))

    def test_reuse_refreshes_last_used_only_when_it_is_old(self):
        content = uuid.uuid4().bytes
        stale = orphan(content, hours=2)
        send({"terms.pdf": content})
        stale.refresh_from_db()
        self.assertGreater(stale.last_used, timezone.now() - datetime.timedelta(minutes=1))
        age(stale, minutes=10)
        with CaptureQueriesContext(connection) as queries:
            send({"terms.pdf": content})
        self.assertFalse([q for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")])

    def test_cleanup_between_an_enqueues_lookup_and_its_link_spares_the_row(self):
        content = uuid.uuid4().bytes
        row = orphan(content)
        through = Attachment.emails.through
        link = through.objects.bulk_create
        results = []

        def cleanup_then_link(*args: Any, **kwargs: Any) -> Any:
            results.append(delete_orphan_attachments())
            return link(*args, **kwargs)

        with self.captureOnCommitCallbacks(execute=True):
            with mock.patch.object(through.objects, "bulk_create", side_effect=cleanup_then_link):
                email = send({"terms.pdf": content})
        self.assertEqual(results, [0])
        self.assertEqual(email.attachments.get(), row)
        self.assertEqual(stored_content(email), {"terms.pdf": content})

    def test_a_row_deleted_before_the_enqueue_refreshes_it_is_stored_again(self):
        content = uuid.uuid4().bytes
        row = orphan(content)
        find = attachments_module._find_rows
        results = []

        def find_then_cleanup(digests: Any) -> Any:
            found = find(digests)
            results.append(delete_orphan_attachments())
            return found

        with self.captureOnCommitCallbacks(execute=True):
            with mock.patch.object(attachments_module, "_find_rows", side_effect=find_then_cleanup):
                email = send({"terms.pdf": content})
        self.assertEqual(results, [1])
        self.assertFalse(Attachment.objects.filter(pk=row.pk).exists())
        self.assertFalse(get_attachment_storage().exists(row.file.name))
        self.assertEqual(stored_content(email), {"terms.pdf": content})


@unittest.skipIf(connection.vendor == "sqlite", "SQLite has one writer at a time: the transactions cannot overlap")
class OrphanCleanupBesideEnqueueTest(TransactionTestCase):
    """Two connections: an enqueue reusing an orphan, and cleanup_mail, at the same moment."""

    def run_in_thread(self, target: Any, results: dict[str, Any], key: str) -> threading.Thread:
        def run() -> None:
            try:
                results[key] = target()
            except BaseException as error:  # noqa: BLE001 - reported by the test
                results[key] = error
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def lock_wait_seen(self, thread: threading.Thread, seconds: float = 10) -> bool:
        """Whether, while ``thread`` runs, the database shows a statement waiting for a row lock."""
        if connection.vendor == "postgresql":
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        else:
            sql = (
                "SELECT count(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p "
                "ON p.id = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()"
            )
        deadline = time.monotonic() + seconds
        while thread.is_alive() and time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                if cursor.fetchone()[0]:
                    return True
            # Not more often: InnoDB refreshes what innodb_trx shows only when it was not read for 0.1 s.
            time.sleep(0.25)
        return False

    def test_the_cleanup_waits_for_the_enqueue_then_spares_the_row(self):
        content = uuid.uuid4().bytes
        row = orphan(content)
        through = Attachment.emails.through
        link = through.objects.bulk_create
        linking, go = threading.Event(), threading.Event()

        def paused_link(*args: Any, **kwargs: Any) -> Any:
            linking.set()
            go.wait(30)
            return link(*args, **kwargs)

        results: dict[str, Any] = {}
        with mock.patch.object(through.objects, "bulk_create", side_effect=paused_link):
            enqueue = self.run_in_thread(lambda: send({"terms.pdf": content}), results, "email")
            self.assertTrue(linking.wait(30))
            cleanup = self.run_in_thread(delete_orphan_attachments, results, "deleted")
            waited = self.lock_wait_seen(cleanup)
            go.set()
            enqueue.join(30)
            cleanup.join(30)
        self.assertTrue(waited, f"the cleanup did not wait for the enqueue's row lock: {results}")
        self.assertEqual(results["deleted"], 0)
        email = results["email"]
        self.assertIsInstance(email, Email)
        self.assertEqual(email.attachments.get(), row)
        self.assertEqual(stored_content(email), {"terms.pdf": content})

    def test_a_row_the_cleanup_deleted_first_is_stored_again(self):
        content = uuid.uuid4().bytes
        row = orphan(content)
        find = attachments_module._find_rows
        found, go = threading.Event(), threading.Event()

        def paused_find(digests: Any) -> Any:
            rows = find(digests)
            found.set()
            go.wait(30)
            return rows

        results: dict[str, Any] = {}
        with mock.patch.object(attachments_module, "_find_rows", side_effect=paused_find):
            enqueue = self.run_in_thread(lambda: send({"terms.pdf": content}), results, "email")
            self.assertTrue(found.wait(30))
            cleanup = self.run_in_thread(delete_orphan_attachments, results, "deleted")
            cleanup.join(30)
            go.set()
            enqueue.join(30)
        self.assertEqual(results["deleted"], 1)
        self.assertFalse(get_attachment_storage().exists(row.file.name))
        email = results["email"]
        self.assertIsInstance(email, Email)
        self.assertNotEqual(email.attachments.get().pk, row.pk)
        self.assertEqual(stored_content(email), {"terms.pdf": content})


class DiscardingSMTPServer(threading.Thread):
    """Just enough SMTP for one client, reading into one buffer: the process allocates nothing per byte received."""

    def __init__(self) -> None:
        import socket

        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.buffer = bytearray(256 * 1024)
        self.received = 0

    def run(self) -> None:
        connection, _address = self.listener.accept()
        with connection:
            connection.sendall(b"220 discard\r\n")
            line, tail, in_data = b"", b"", False
            while True:
                count = connection.recv_into(self.buffer)
                if not count:
                    return
                chunk = memoryview(self.buffer)[:count]
                if in_data:
                    self.received += count
                    tail = (tail + bytes(chunk[-5:]))[-5:]
                    if tail == b"\r\n.\r\n":
                        in_data, tail = False, b""
                        connection.sendall(b"250 discarded\r\n")
                    continue
                line += bytes(chunk)
                while b"\r\n" in line:
                    command, line = line.split(b"\r\n", 1)
                    verb = command[:4].upper()
                    if verb == b"DATA":
                        in_data = True
                        connection.sendall(b"354 go on\r\n")
                    elif verb == b"QUIT":
                        connection.sendall(b"221 bye\r\n")
                        return
                    else:
                        connection.sendall(b"250 ok\r\n")


@unittest.skipIf(DJANGO_61, "measured on Django 5.2's compat32 messages; Django 6.1 builds attachments otherwise")
class DeliveryMemoryTest(SimpleTestCase):
    """Peak memory while building and sending one email with a 10 MB (random, so binary) attachment.

    Measured with tracemalloc, as a multiple of the attachment's size, through
    ``build_message`` and Django's SMTP backend (Django 5.2, Python 3.11):

    * before: 8.84x, all of it while the message was built: Django's
      ``_create_mime_attachment`` keeps the bytes as a string of escaped
      surrogates (2x), ``encode_base64`` encodes them back (1x) and
      ``base64.encodebytes`` makes an object per line (about 3.5x);
    * after: 6.46x, 3.71x up to the built message (the content, its base64
      text and one buffer): compose encodes once, in blocks
      (``parts.base64_part``). What remains is the standard library's
      generator (``as_bytes``, 3.9x over the 2.35x held) and ``smtplib``'s
      copies of the data in ``sendmail`` (2.7x), in Django's SMTP backend.
    """

    SIZE = 10 * MiB

    def test_peak_memory_stays_a_small_multiple_of_the_attachment(self):
        from django.core.mail.backends.smtp import EmailBackend

        from post_office.message.compose import build_message

        storage = get_attachment_storage()
        name = storage.save(f"post_office_attachments/test/{uuid.uuid4().hex}", ContentFile(os.urandom(self.SIZE)))
        self.addCleanup(storage.delete, name)
        attachment = Attachment(name="report.pdf", mimetype="application/pdf", content_hash="0" * 64)
        attachment.file.name = name
        email = Email(pk=1, from_email="from@example.com", to=["to@example.com"], subject="s", message="body")
        email.loaded_attachments = [attachment]
        server = DiscardingSMTPServer()
        server.start()
        backend = EmailBackend(host="127.0.0.1", port=server.port, use_tls=False, use_ssl=False, timeout=30)
        backend.open()
        self.addCleanup(backend.close)
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            message = build_message(email)
            message.message()
            built = tracemalloc.get_traced_memory()[1] - start
            self.assertEqual(backend.send_messages([message]), 1)
            peak = tracemalloc.get_traced_memory()[1] - start
        finally:
            tracemalloc.stop()
        self.assertGreater(server.received, self.SIZE * 4 // 3)
        self.assertLess(built / self.SIZE, 5, f"building peaked at {built / self.SIZE:.2f}x")
        self.assertLess(peak / self.SIZE, 7.5, f"sending peaked at {peak / self.SIZE:.2f}x")
