"""Recording: the results of a chunk of attempts written in one transaction, then the signals.

Results are written only where the claim token still matches, so a worker whose
lease ran out never overwrites the result of the worker that took the email
over. Sent emails cost one UPDATE per claim token and one ``INSERT ... SELECT``
of Log rows; failures one UPDATE each for failed and requeued and one Log insert.
Each Log row names the claim it was made under (``Log.worker``), or the worker
when the attempt was made outside a claim (``Email.dispatch()``).
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Case, F, JSONField, Q, QuerySet, Value, When
from django.dispatch import Signal
from django.utils import timezone

from ..choices import STATUS
from ..conf import mail_passwords
from ..models import Email, Log
from ..signals import email_failed, email_sent
from ..transport.failures import PartlyRefused, setup_text
from .claim import adapt_datetime, column
from .retry import decide
from .stats import Outcome, RunStats
from .transient import retrying

logger = logging.getLogger("post_office")

T = TypeVar("T")


def _nothing() -> None:
    return None


class Recorder:
    """Writes results for one worker: ``log_level`` decides the Log rows, ``stats`` counts, ``on_progress`` hears.

    ``worker``: the worker's name, written in the Log rows of attempts made outside a claim.
    """

    def __init__(
        self,
        log_level: int,
        stats: RunStats,
        on_progress: Callable[[RunStats], None] | None,
        worker: str = "",
    ) -> None:
        self.log_level = log_level
        self.stats = stats
        self.on_progress = on_progress
        self.worker = worker

    def record(self, token: str | None, outcomes: list[Outcome]) -> None:
        """Write sent / requeued / failed statuses and Log rows for a chunk of attempts.

        At most four queries for any number of emails: one UPDATE per outcome
        (the per-email retry times go in one CASE expression) and one Log insert.
        """
        self.record_then(token, outcomes, _nothing)

    def record_then(self, token: str | None, outcomes: list[Outcome], body: Callable[[], T]) -> T:
        """Write a chunk of results and run ``body`` in the same transaction; then count and signal.

        The pipeline claims its next batch in ``body``, so writing results and
        claiming cost one commit together. The outcomes are decided once; when
        the database refuses the transaction for a moment (a deadlock), the
        writes and ``body`` run again (:mod:`.transient`).
        """
        if not outcomes:
            return retrying(body, "a claim")
        now = timezone.now()
        held = [outcome for outcome in outcomes if outcome.held]
        sent, failed, requeued, logs = self._decide([o for o in outcomes if not o.held] if held else outcomes, now)
        tokens = {outcome.email.pk: outcome.token or token for outcome in outcomes}

        def write() -> T:
            with transaction.atomic():
                self._write(now, tokens, held, sent, failed, requeued, logs)
                return body()

        result = retrying(write, "the results of a batch")
        self.stats.sent += len(sent)
        self.stats.failed += len(failed)
        self.stats.requeued += len(requeued)
        if held:
            self._hold(held)
        if sent and OUTAGES.aliases:
            OUTAGES.recovered({email.backend_alias or "default" for email in sent})
        _send_signals(sent, failed, requeued)
        if self.on_progress is not None:
            self.on_progress(self.stats)
        return result

    def _write(
        self,
        now: datetime,
        tokens: dict[int, str | None],
        held: list[Outcome],
        sent: list[Email],
        failed: list[_Failure],
        requeued: list[_Failure],
        logs: list[_LogRow],
    ) -> None:
        """The statements of one chunk of results (the caller's transaction)."""
        released = {"claimed_by": "", "lease_expires_at": None, "last_updated": now}
        if held:
            # Not the email's fault (transport.failures): back in the queue, no attempt counted, no Log row.
            _still_claimed([o.email for o in held], tokens).update(status=STATUS.queued, **released)
        if sent:
            # Emails sent with some recipients refused have their own Log row already.
            logged = {pk for pk, _status, _kind, _text in logs}
            _record_sent(sent, tokens, now, log=self.log_level >= 2, logged=logged, worker=self.worker)
        if failed:
            _still_claimed([e for e, _ in failed], tokens).update(status=STATUS.failed, **released)
        if requeued:
            partial = [e for e, error in requeued if isinstance(error, PartlyRefused)]
            narrowed = (
                {
                    "pending_recipients": Case(
                        *(When(id=e.pk, then=Value(e.pending_recipients, JSONField())) for e in partial),
                        default=F("pending_recipients"),
                    )
                }
                if partial
                else {}
            )
            _still_claimed([e for e, _ in requeued], tokens).update(
                status=STATUS.requeued,
                number_of_retries=F("number_of_retries") + 1,
                scheduled_time=Case(*(When(id=e.pk, then=Value(e.scheduled_time)) for e, _ in requeued)),
                **narrowed,
                **released,
            )
        if logs:
            _insert_logs(logs, now, {pk: tokens[pk] or self.worker for pk, _status, _kind, _text in logs})

    def _hold(self, held: list[Outcome]) -> None:
        """Count emails held back by a setup error, and say once per alias what is wrong."""
        self.stats.held += len(held)
        for outcome in held:
            alias = outcome.email.backend_alias or "default"
            if alias not in self.stats.blocked:
                text = setup_text(outcome.error, mail_passwords())  # type: ignore[arg-type]
                self.stats.blocked[alias] = text
                OUTAGES.report(alias, text)

    def _partly_refused(
        self, email: Email, refused: PartlyRefused, now: datetime, requeued: list[_Failure], logs: list[_LogRow]
    ) -> bool:
        """An email the server took for some recipients: True when it is requeued for those refused for now.

        Recipients refused with a 4xx reply (452 too many recipients, 451...) are
        retried, and only they (``pending_recipients``), while MAX_RETRIES allows;
        the others are logged. Otherwise the email counts as sent, with a Log
        row naming who did not get it.
        """
        transient = refused.transient()
        decision = decide(email, smtplib.SMTPRecipientsRefused(transient), now) if transient else None
        retry = decision is not None and decision.retry
        if self.log_level >= 1:
            logs.append((email.pk, STATUS.failed if retry else STATUS.sent, "PartlyRefused", describe(refused)[:10000]))
        logger.warning(
            "Email %s was accepted for %d recipients and refused for %d%s",
            email.pk,
            refused.accepted,
            len(refused.refused),
            f"; {len(transient)} will be retried" if retry else "",
            extra={"email_id": email.pk, "refused": sorted(refused.refused), "will_retry": retry},
        )
        if not retry:
            return False
        assert decision is not None
        requeued.append((email, refused))
        email.status = STATUS.requeued
        email.number_of_retries += 1
        email.scheduled_time = decision.next_attempt
        email.pending_recipients = list(transient)
        return True

    def _decide(
        self, outcomes: list[Outcome], now: datetime
    ) -> tuple[list[Email], list[_Failure], list[_Failure], list[_LogRow]]:
        """Sort outcomes into sent, failed and requeued (by the retry policy), with the Log rows of failures."""
        sent: list[Email] = []
        failed: list[_Failure] = []
        requeued: list[_Failure] = []
        logs: list[_LogRow] = []
        for outcome in outcomes:
            email, error = outcome.email, outcome.error
            if error is None:
                if outcome.refused is not None and self._partly_refused(email, outcome.refused, now, requeued, logs):
                    continue
                sent.append(email)
                email.status = STATUS.sent
                continue
            decision = decide(email, error, now)
            if decision.retry:
                requeued.append((email, error))
                email.status = STATUS.requeued
                email.number_of_retries += 1
                email.scheduled_time = decision.next_attempt
            else:
                failed.append((email, error))
                email.status = STATUS.failed
            if self.log_level >= 1:
                logs.append((email.pk, STATUS.failed, type(error).__name__, describe(error)[:10000]))
            logger.warning(
                "Delivery of email %s failed (%s, %s): %s",
                email.pk,
                decision.kind.value,
                "will retry" if decision.retry else "not retried",
                describe(error),
                extra={
                    "email_id": email.pk,
                    "error_kind": decision.kind.value,
                    "will_retry": decision.retry,
                    "attempt": email.number_of_retries + (0 if decision.retry else 1),
                },
            )
        return sent, failed, requeued, logs


#: An email that failed, with its error.
_Failure = tuple[Email, BaseException]
#: A Log row to insert: email id, status, exception type, message.
_LogRow = tuple[int, int, str, str]


def _record_sent(
    emails: list[Email],
    tokens: dict[int, str | None],
    now: datetime,
    log: bool,
    logged: Collection[int] = (),
    worker: str = "",
) -> None:
    """Mark sent emails (where still held under their claim) and write their Log rows.

    The hot path of every chunk: one UPDATE and one ``INSERT ... SELECT`` of
    Log rows per claim token, with only the ids, the date and the token as
    parameters (``worker`` stands for the token of attempts made outside a claim).
    """
    quote = db_connection.ops.quote_name
    table, pk = quote(Email._meta.db_table), column(Email, "id")
    status, claimed_by = column(Email, "status"), column(Email, "claimed_by")
    when = adapt_datetime(now)
    with db_connection.cursor() as cursor:
        by_token = _ids_by_token(emails, tokens)
        for token, ids in by_token.items():
            for chunk in _chunks(ids):
                sql = (
                    f"UPDATE {table} SET {status} = %s, {claimed_by} = '', {column(Email, 'lease_expires_at')} = NULL, "  # noqa: S608
                    f"{column(Email, 'pending_recipients')} = NULL, "
                    f"{column(Email, 'last_updated')} = %s WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})"
                )
                params: list[Any] = [int(STATUS.sent), when, *chunk]
                if token:
                    sql += f" AND {claimed_by} = %s AND {status} = %s"
                    params += [token, int(STATUS.sending)]
                cursor.execute(sql, params)
        if not log:
            return
        columns = ", ".join(column(Log, name) for name in LOG_COLUMNS)
        log_date = Log._meta.get_field("date").get_db_prep_save(now, db_connection)  # type: ignore[union-attr]
        for token, ids in by_token.items():
            for chunk in _chunks([pk for pk in ids if pk not in logged] if logged else ids):
                cursor.execute(
                    f"INSERT INTO {quote(Log._meta.db_table)} ({columns}) SELECT {pk}, %s, %s, '', '', %s "  # noqa: S608
                    f"FROM {table} WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})",
                    [log_date, int(STATUS.sent), token or worker, *chunk],
                )


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in slices small enough for any database's limit on query parameters."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


#: The Log columns delivery writes, in the order of its INSERTs.
LOG_COLUMNS = ("email", "date", "status", "exception_type", "message", "worker")


def _insert_logs(rows: Sequence[tuple[int, int, str, str]], now: datetime, workers: dict[int, str]) -> None:
    """Insert Log rows (email id, status, exception type, message) with one executemany.

    What ``Log.objects.bulk_create`` does, without building a model instance
    and running the field machinery for each of a hundred rows per chunk.
    ``workers``: the claim token (or worker name) of each email's attempt.
    """
    columns = ", ".join(column(Log, name) for name in LOG_COLUMNS)
    date = Log._meta.get_field("date").get_db_prep_save(now, db_connection)  # type: ignore[union-attr]
    sql = f"INSERT INTO {db_connection.ops.quote_name(Log._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608
    with db_connection.cursor() as cursor:
        cursor.executemany(
            sql, [(pk, date, int(status), kind, text, workers.get(pk, "")) for pk, status, kind, text in rows]
        )


def describe(error: BaseException) -> str:
    """The error's text for a Log row: never raises, and storable in every database."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the chunk from being recorded
        text = f"<unprintable {type(error).__name__}>"
    # PostgreSQL text columns cannot hold NUL characters; one in a backend's
    # error would make the whole chunk's write fail.
    return text.replace("\x00", "\\x00")


def _ids_by_token(emails: list[Email], tokens: dict[int, str | None]) -> dict[str | None, list[int]]:
    """The emails' ids grouped by the claim token each was sent under."""
    by_token: dict[str | None, list[int]] = {}
    for email in emails:
        by_token.setdefault(tokens[email.pk], []).append(email.pk)
    return by_token


def _still_claimed(emails: list[Email], tokens: dict[int, str | None]) -> QuerySet[Email]:
    """These emails, where each is still held under the claim it was sent with.

    A worker whose lease ran out (and whose email another worker took over)
    matches nothing here, so it cannot overwrite the newer result.
    """
    condition = Q()
    for token, ids in _ids_by_token(emails, tokens).items():
        condition |= Q(id__in=ids, claimed_by=token, status=STATUS.sending) if token else Q(id__in=ids)
    return Email.objects.filter(condition)


class _Outages:
    """Which aliases this process found unable to deliver: an outage is logged loudly once, not once per pass."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, alias: str, text: str) -> None:
        with self._lock:
            known, self.aliases[alias] = self.aliases.get(alias), text
        if known == text:
            logger.debug("Delivery through %r still cannot connect: %s", alias, text)
            return
        logger.error(
            "Delivery through %r stopped: %s. This is the connection or its credentials, not the emails: they stay "
            "queued and are sent once it works (check the backend's host, port, TLS and credentials).",
            alias,
            text,
            extra={"backend_alias": alias, "error": text},
        )

    def recovered(self, aliases: set[str]) -> None:
        with self._lock:
            back = [alias for alias in aliases if self.aliases.pop(alias, None) is not None]
        for alias in back:
            logger.warning("Delivery through %r works again", alias, extra={"backend_alias": alias})


#: This process's record of aliases that could not deliver.
OUTAGES = _Outages()


def _send_signals(
    sent: list[Email], failed: list[tuple[Email, BaseException]], requeued: list[tuple[Email, BaseException]]
) -> None:
    if sent and email_sent.has_listeners(Email):
        for email in sent:
            _notify(email_sent, email=email)
    if (failed or requeued) and email_failed.has_listeners(Email):
        for email, error in failed:
            _notify(email_failed, email=email, exception=error, will_retry=False)
        for email, error in requeued:
            _notify(email_failed, email=email, exception=error, will_retry=True)


def _notify(signal: Signal, **kwargs: Any) -> None:
    # The results are already written: a failing receiver is logged and must not stop delivery.
    for receiver, result in signal.send_robust(sender=Email, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "Signal receiver %r failed for email %s: %s", receiver, kwargs["email"].pk, result, exc_info=result
            )
