"""Records kept beside the queue: the do-not-send list, and the rows an import brought in.

``post_office.models`` exports both models; they live here to keep that module
small. Enforcing the list is not done here but where mail goes in
(:mod:`post_office.enqueue.do_not_send`) and out
(:mod:`post_office.delivery.do_not_send`).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .exceptions import InvalidArgument, InvalidEmail
from .validation import parse_address

__all__ = ["DoNotSendEntry", "DoNotSendQuerySet", "ImportedRow", "do_not_send_key"]


def do_not_send_key(address: str) -> str:
    """An address as the do-not-send list keeps it: the bare address in lower case, an IDN domain in ASCII.

    ``"Bob" <Bob@Example.COM>`` and ``bob@example.com`` are the same entry.
    """
    text = address.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rfind("<") + 1 : -1].strip()
    local, at, domain = text.rpartition("@")
    if at and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a domain IDNA can write: compared as given
    return f"{local}{at}{domain}".lower()


@functools.lru_cache(maxsize=64)
def _listed_sql_text(quoted_table: str, address: str, reason: str, count: int) -> str:
    placeholders = ", ".join(["%s"] * count)
    return f"SELECT {address}, {reason} FROM {quoted_table} WHERE {address} IN ({placeholders})"  # noqa: S608


def _listed_sql(connection: BaseDatabaseWrapper, count: int) -> str:
    """``SELECT address, reason ... WHERE address IN (%s, ...)`` with ``count`` placeholders (names quoted)."""
    quote = connection.ops.quote_name
    return _listed_sql_text(quote(DoNotSendEntry._meta.db_table), quote("address"), quote("reason"), count)


class DoNotSendQuerySet(models.QuerySet["DoNotSendEntry"]):
    #: Addresses per query of :meth:`listed` (below every database's limit on parameters).
    CHUNK = 500

    def listed(self, addresses: Iterable[str]) -> dict[str, str]:
        """Which of these addresses are on the list: ``{key: reason}`` (keys as :func:`do_not_send_key` makes them).

        One indexed query (one per :attr:`CHUNK` distinct addresses).
        """
        keys = sorted({do_not_send_key(address) for address in addresses})
        found: dict[str, str] = {}
        if not keys:
            return found
        # Plain SQL: on the enqueue path this query runs once per send(), and building it as a
        # queryset would cost more than the query itself.
        connection = connections[self.db]
        with connection.cursor() as cursor:
            for start in range(0, len(keys), self.CHUNK):
                chunk = keys[start : start + self.CHUNK]
                cursor.execute(_listed_sql(connection, len(chunk)), chunk)
                found.update(cursor.fetchall())
        return found

    def add(
        self,
        address: str,
        reason: str = "manual",
        note: str = "",
        created: datetime.datetime | None = None,
    ) -> tuple[DoNotSendEntry, bool]:
        """Put an address on the list; return the entry and whether it is new.

        The address is checked like a recipient of ``mail.send`` (an
        :class:`~post_office.exceptions.InvalidAddress` names it otherwise) and
        kept in its normal form. An address already listed keeps its entry.
        Bounce, complaint and unsubscribe handlers call this with their reason.
        """
        parse_address(address, "address")
        if reason not in DoNotSendEntry.Reason.values:
            raise InvalidArgument("reason", reason, f"must be one of {', '.join(DoNotSendEntry.Reason.values)}")
        return self.get_or_create(
            address=do_not_send_key(address),
            defaults={"reason": reason, "note": note, "created": created or timezone.now()},
        )

    def remove(self, address: str) -> bool:
        """Take an address off the list; True if it was on it."""
        deleted, _per_model = self.filter(address=do_not_send_key(address)).delete()
        return bool(deleted)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        objs = list(objs)
        for obj in objs:
            obj.address = do_not_send_key(obj.address)
        return super().bulk_create(objs, *args, **kwargs)

    add.alters_data = True  # type: ignore[attr-defined]
    remove.alters_data = True  # type: ignore[attr-defined]
    bulk_create.alters_data = True  # type: ignore[attr-defined]


class DoNotSendEntry(models.Model):
    """An address no email is sent to: enqueueing and delivery skip it, with a Log row each time."""

    class Reason(models.TextChoices):
        manual = "manual", _("added by hand")
        mailer = "django-mailer", _("imported from django-mailer")
        # Fed by bounce, complaint and unsubscribe handlers (DoNotSendEntry.objects.add).
        bounce = "bounce", _("bounced")
        complaint = "complaint", _("spam complaint")
        unsubscribe = "unsubscribe", _("unsubscribed")

    #: The bare address in lower case (see do_not_send_key): compared without regard to case.
    address = models.CharField(_("address"), max_length=254, unique=True)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices, default=Reason.manual)
    created = models.DateTimeField(_("added"), default=timezone.now, db_index=True)
    note = models.TextField(_("note"), blank=True)

    objects = DoNotSendQuerySet.as_manager()

    class Meta:
        app_label = "post_office"
        verbose_name = _("do-not-send entry")
        verbose_name_plural = _("do-not-send list")
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.address

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.address = do_not_send_key(self.address)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        try:
            parse_address(self.address, "address")
        except InvalidEmail:
            message = _("%(value)s is not a valid email address (e.g. bob@example.com).")
            error = ValidationError(message, code="invalid", params={"value": repr(self.address)})
            raise ValidationError({"address": error}) from None
        self.address = do_not_send_key(self.address)


class ImportedRow(models.Model):
    """A row of another mail app's tables that an import brought in: later runs skip it.

    ``source`` names the table (``mailer_message``, ``mailer_messagelog``,
    ``mailer_dontsendentry``), ``source_id`` the row; ``key`` identifies the
    message a row belongs to, so that its logs find the email made from it.
    """

    source = models.CharField(_("source table"), max_length=64)
    source_id = models.BigIntegerField(_("source row id"))
    email = models.ForeignKey(
        "post_office.Email", verbose_name=_("email"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = models.CharField(_("message key"), max_length=64, blank=True, default="", db_index=True)
    imported = models.DateTimeField(_("imported"), auto_now_add=True)

    class Meta:
        app_label = "post_office"
        verbose_name = _("imported row")
        verbose_name_plural = _("imported rows")
        constraints = [
            models.UniqueConstraint(fields=["source", "source_id"], name="post_office_importedrow_source"),
        ]

    def __str__(self) -> str:
        return f"{self.source} #{self.source_id}"
