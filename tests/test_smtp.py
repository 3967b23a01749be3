"""post_office.smtp: the pipelined SMTP transaction, reply by reply, and the backend substitution."""

from __future__ import annotations

import smtplib

from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.test import SimpleTestCase, override_settings

from post_office.transport import smtp
from post_office.transport.connections import accepts_wire, backend_factory
from post_office.transport.smtp import Wire

WIRE = Wire("from@example.com", ["a@example.com", "b@example.com"], b"Subject: x\r\n\r\n.dot line\r\nend")


class ScriptedConnection:
    """Stands in for smtplib.SMTP: records what is sent, answers with scripted replies."""

    def __init__(self, *replies: tuple[int, bytes], extensions: tuple[str, ...] = ("pipelining", "size")) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []
        self.extensions = extensions
        self.resets = 0
        self.closed = False
        self.sock: object | None = object()
        self.does_esmtp = True

    def has_extn(self, name: str) -> bool:
        return name in self.extensions

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def getreply(self) -> tuple[int, bytes]:
        if not self.replies:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return self.replies.pop(0)

    def rset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True
        self.sock = None


OK, QUEUED = (250, b"OK"), (250, b"queued as 1")
GO_AHEAD = (354, b"go ahead")


class PipelinedTransactionTest(SimpleTestCase):
    def test_success_sends_commands_in_one_write_then_the_data(self):
        connection = ScriptedConnection(OK, OK, OK, GO_AHEAD, QUEUED)
        smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        commands, data = connection.sent
        self.assertEqual(
            commands,
            b"MAIL FROM:<from@example.com> SIZE=28\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
        )
        # Leading dots doubled, CRLF added before the final dot.
        self.assertEqual(data, b"Subject: x\r\n\r\n..dot line\r\nend\r\n.\r\n")
        self.assertEqual((connection.replies, connection.resets), ([], 0))

    def test_no_size_parameter_when_the_server_does_not_offer_it(self):
        connection = ScriptedConnection(OK, OK, OK, GO_AHEAD, QUEUED, extensions=("pipelining",))
        smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertTrue(connection.sent[0].startswith(b"MAIL FROM:<from@example.com>\r\n"))

    def test_sender_refused(self):
        connection = ScriptedConnection((550, b"no"), (503, b"need MAIL"), (503, b"need MAIL"), (503, b"need RCPT"))
        with self.assertRaises(smtplib.SMTPSenderRefused) as caught:
            smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertEqual((caught.exception.smtp_code, caught.exception.sender), (550, "from@example.com"))
        self.assertEqual((len(connection.sent), connection.resets, connection.replies), (1, 1, []))

    def test_every_recipient_refused(self):
        connection = ScriptedConnection(OK, (550, b"unknown"), (451, b"later"), (554, b"no valid recipients"))
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as caught:
            smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertEqual(
            caught.exception.recipients, {"a@example.com": (550, b"unknown"), "b@example.com": (451, b"later")}
        )
        self.assertEqual((len(connection.sent), connection.resets), (1, 1))

    def test_data_accepted_after_every_recipient_was_refused_is_ended_empty(self):
        connection = ScriptedConnection(OK, (550, b"a"), (550, b"b"), GO_AHEAD, (554, b"no recipients"))
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertEqual(connection.sent[1], b".\r\n")  # the message itself never went out
        self.assertEqual(connection.replies, [])

    def test_one_recipient_refused_the_other_gets_it(self):
        connection = ScriptedConnection(OK, (550, b"a"), OK, GO_AHEAD, QUEUED)
        smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertTrue(connection.sent[1].endswith(b"end\r\n.\r\n"))

    def test_data_refused_before_and_after_the_message(self):
        for replies, code in [((OK, OK, OK, (451, b"busy")), 451), ((OK, OK, OK, GO_AHEAD, (550, b"spam")), 550)]:
            with self.subTest(code=code):
                connection = ScriptedConnection(*replies)
                with self.assertRaises(smtplib.SMTPDataError) as caught:
                    smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
                self.assertEqual((caught.exception.smtp_code, connection.resets), (code, 1))

    def test_421_closes_the_connection_instead_of_resetting_it(self):
        connection = ScriptedConnection(OK, OK, OK, GO_AHEAD, (421, b"closing"))
        with self.assertRaises(smtplib.SMTPDataError):
            smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]
        self.assertEqual((connection.closed, connection.resets), (True, 0))

    def test_disconnect_mid_transaction_raises_a_disconnect(self):
        connection = ScriptedConnection(OK, OK)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            smtp.send_pipelined(connection, WIRE)  # type: ignore[arg-type]


def wires(count: int) -> list[tuple[int, Wire]]:
    return [
        (n, Wire("from@example.com", [f"to{n}@example.com"], f"Subject: {n}\r\n\r\nbody {n}".encode()))
        for n in range(count)
    ]


def commands(n: int) -> bytes:
    return f"MAIL FROM:<from@example.com> SIZE=20\r\nRCPT TO:<to{n}@example.com>\r\nDATA\r\n".encode()


def content(n: int) -> bytes:
    return f"Subject: {n}\r\n\r\nbody {n}\r\n.\r\n".encode()


class ChainTest(SimpleTestCase):
    """Messages back to back: each one's content goes out with the next one's commands (RFC 2920)."""

    def run_chain(self, connection: ScriptedConnection, count: int = 3) -> list[tuple[int, object]]:
        results: list[tuple[int, object]] = []
        smtp.send_chain(connection, iter(wires(count)), lambda key, error: results.append((key, error)))  # type: ignore[arg-type]
        return results

    def test_one_write_and_one_round_trip_per_message(self):
        connection = ScriptedConnection(OK, OK, GO_AHEAD, QUEUED, OK, OK, GO_AHEAD, QUEUED, OK, OK, GO_AHEAD, QUEUED)
        self.assertEqual(self.run_chain(connection), [(0, None), (1, None), (2, None)])
        self.assertEqual(
            connection.sent,
            [commands(0), content(0) + commands(1), content(1) + commands(2), content(2)],
        )
        self.assertEqual((connection.replies, connection.resets), ([], 0))

    def test_a_refused_message_is_reported_and_the_next_starts_afresh(self):
        connection = ScriptedConnection(
            OK, OK, GO_AHEAD, QUEUED,  # 0 sent
            OK, (550, b"unknown"), (554, b"no valid recipients"),  # 1 refused, the connection reset
            OK, OK, GO_AHEAD, QUEUED,  # 2 sent
        )  # fmt: skip
        results = self.run_chain(connection)
        self.assertEqual([key for key, _error in results], [0, 1, 2])
        self.assertIsNone(results[0][1])
        self.assertIsInstance(results[1][1], smtplib.SMTPRecipientsRefused)
        self.assertIsNone(results[2][1])
        # 1's commands went with 0's content; 2's went alone after the reset.
        self.assertEqual(connection.sent, [commands(0), content(0) + commands(1), commands(2), content(2)])
        self.assertEqual(connection.resets, 1)

    def test_a_message_refused_after_its_content_does_not_stop_the_next(self):
        connection = ScriptedConnection(OK, OK, GO_AHEAD, (451, b"later"), OK, OK, GO_AHEAD, QUEUED)
        results = self.run_chain(connection, 2)
        self.assertIsInstance(results[0][1], smtplib.SMTPDataError)
        self.assertEqual(results[0][1].smtp_code, 451)  # type: ignore[union-attr]
        self.assertEqual(results[1], (1, None))
        # The transaction ended with the reply: no RSET, which would cancel the next one's commands.
        self.assertEqual(connection.resets, 0)

    def test_421_after_the_content_gives_back_the_next_message_unsent(self):
        connection = ScriptedConnection(OK, OK, GO_AHEAD, (421, b"closing"))
        results: list[tuple[int, object]] = []
        with self.assertRaises(smtp.ConnectionBroken) as caught:
            smtp.send_chain(connection, iter(wires(3)), lambda key, error: results.append((key, error)))  # type: ignore[arg-type]
        self.assertEqual([key for key, _error in results], [0])
        self.assertEqual(results[0][1].smtp_code, 421)  # type: ignore[union-attr]
        # 1's commands were written but its content never was: it goes on another connection. 2 was never taken.
        self.assertEqual(caught.exception.unsent, [1])
        self.assertTrue(connection.closed)

    def test_421_before_the_content_breaks_the_chain(self):
        connection = ScriptedConnection(OK, OK, GO_AHEAD, QUEUED, (421, b"closing"), (421, b"closing"), (421, b"x"))
        results: list[tuple[int, object]] = []
        with self.assertRaises(smtp.ConnectionBroken) as caught:
            smtp.send_chain(connection, iter(wires(3)), lambda key, error: results.append((key, error)))  # type: ignore[arg-type]
        self.assertEqual([key for key, _error in results], [0, 1])
        self.assertIsInstance(results[1][1], smtplib.SMTPSenderRefused)
        self.assertEqual(caught.exception.unsent, [])

    def test_a_disconnect_reports_the_message_in_flight_and_gives_back_the_next(self):
        connection = ScriptedConnection(OK, OK, GO_AHEAD, QUEUED, OK, OK, GO_AHEAD)
        results: list[tuple[int, object]] = []
        with self.assertRaises(smtp.ConnectionBroken) as caught:
            smtp.send_chain(connection, iter(wires(3)), lambda key, error: results.append((key, error)))  # type: ignore[arg-type]
        self.assertEqual([key for key, _error in results], [0, 1])
        self.assertIsInstance(results[1][1], smtplib.SMTPServerDisconnected)
        self.assertEqual(caught.exception.unsent, [2])

    def test_items_are_taken_only_when_the_connection_is_ready_for_them(self):
        taken: list[int] = []

        def items():
            for key, wire in wires(3):
                taken.append(key)
                yield key, wire

        connection = ScriptedConnection(OK, OK, GO_AHEAD, QUEUED)
        with self.assertRaises(smtp.ConnectionBroken):
            smtp.send_chain(connection, items(), lambda key, error: None)  # type: ignore[arg-type]
        # The second was taken to go with the first's content; the third never was.
        self.assertEqual(taken, [0, 1])


class BackendSendWiresTest(SimpleTestCase):
    def backend(self, connection: object) -> smtp.EmailBackend:
        # Not through __init__: it reads the EMAIL_* settings, which Django 6.1 refuses when MAILERS is set.
        backend = object.__new__(smtp.EmailBackend)
        backend.connection = connection  # type: ignore[assignment]
        return backend

    def test_without_pipelining_each_message_goes_through_sendmail(self):
        class Plain(ScriptedConnection):
            def ehlo_or_helo_if_needed(self) -> None:
                pass

            def sendmail(self, sender, recipients, data):  # type: ignore[no-untyped-def]
                if recipients == ["to1@example.com"]:
                    raise smtplib.SMTPRecipientsRefused({"to1@example.com": (550, b"no")})
                self.sent.append(data)

        connection = Plain(extensions=())
        results: list[tuple[int, object]] = []
        self.backend(connection).send_wires(iter(wires(3)), lambda key, error: results.append((key, error)))
        self.assertEqual([(key, type(error).__name__) for key, error in results], [
            (0, "NoneType"), (1, "SMTPRecipientsRefused"), (2, "NoneType")
        ])  # fmt: skip
        self.assertEqual(len(connection.sent), 2)


class SubstitutionTest(SimpleTestCase):
    @override_settings(POST_OFFICE={"BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"}})
    def test_djangos_smtp_backend_is_delivered_through_ours(self):
        backend = backend_factory("default")
        self.assertIs(backend, smtp.EmailBackend)
        self.assertTrue(issubclass(backend, DjangoSMTPBackend))
        self.assertTrue(accepts_wire("default"))

    @override_settings(POST_OFFICE={"BACKENDS": {"default": "tests.test_smtp.CustomSMTPBackend"}})
    def test_a_subclass_of_djangos_backend_is_used_as_it_is(self):
        self.assertIs(backend_factory("default"), CustomSMTPBackend)
        self.assertFalse(accepts_wire("default"))

    @override_settings(POST_OFFICE={"BACKENDS": {"default": "django.core.mail.backends.locmem.EmailBackend"}})
    def test_other_backends_get_django_messages(self):
        self.assertFalse(accepts_wire("default"))


class CustomSMTPBackend(DjangoSMTPBackend):
    """A project's own SMTP backend: it may override send_messages, so it gets Django messages."""


class ReplyWaitingTest(SimpleTestCase):
    def test_tells_whether_the_reply_has_arrived(self):
        import socket

        ours, server = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(server.close)
        connection = smtplib.SMTP()
        connection.sock = ours
        self.assertFalse(smtp._reply_waiting(connection))
        server.sendall(b"250 OK\r\n")
        self.assertTrue(smtp._reply_waiting(connection))
        connection.sock = None
        self.assertFalse(smtp._reply_waiting(connection))
