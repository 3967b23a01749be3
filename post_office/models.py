"""The queue's data: Email, EmailTemplate, Attachment and Log."""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.files.storage import Storage
from django.db import models, router, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .choices import CLAIMABLE, PRIORITY, STATUS, RecipientDeliveryStatus
from .conf import settings as po_settings
from .conf import template_cache
from .fields import AddressListField
from .indexes import ClaimIndex, ExpiryIndex, LeaseIndex, PresentIndex, claimable
from .languages import normalize_language, supported_language
from .model_compat import AttachmentApi, EmailApi, EmailTemplateApi, TemplateNaturalKeys, get_upload_path
from .records import DoNotSendEntry, DoNotSendQuerySet, ImportedRow, do_not_send_key
from .storage import AttachmentStorage
from .validation import check_database_template_name, check_template_syntax

if TYPE_CHECKING:
    from django.core.mail import EmailMessage

__all__ = [
    "CLAIMABLE",
    "PRIORITY",
    "STATUS",
    "Attachment",
    "ClaimIndex",
    "DeliveryHealth",
    "DeliverySwitch",
    "DoNotSendEntry",
    "DoNotSendQuerySet",
    "Email",
    "EmailQuerySet",
    "EmailTemplate",
    "EmailTemplateManager",
    "EmailTemplateQuerySet",
    "EmailTemplateVersion",
    "ImportedRow",
    "Log",
    "RecipientDeliveryStatus",
    "WorkerHeartbeat",
    "do_not_send_key",
    "get_attachment_storage",
    "get_upload_path",
    "template_cache_key",
]

logger = logging.getLogger("post_office")


class EmailQuerySet(models.QuerySet["Email"]):
    def queued(self) -> EmailQuerySet:
        """Emails waiting for delivery, due or not."""
        return self.filter(claimable())

    def due(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Queued emails whose time has come and which have not expired."""
        now = now or timezone.now()
        scheduled, expiry = Q(scheduled_time__isnull=True) | Q(scheduled_time__lte=now), Q(expires_at__isnull=True)
        return self.queued().filter(scheduled).filter(expiry | Q(expires_at__gt=now))

    def expired(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Queued emails whose expiry has passed: they are never delivered."""
        return self.queued().filter(expires_at__lte=now or timezone.now())

    def stale_leases(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Emails claimed by a worker whose lease ran out (the worker died)."""
        return self.filter(status=STATUS.sending, lease_expires_at__lt=now or timezone.now())

    def in_sending_order(self) -> EmailQuerySet:
        return self.order_by(*po_settings.SENDING_ORDER, "id")


class Email(EmailApi, models.Model):
    """One queued, sent or failed email."""

    STATUS = STATUS
    PRIORITY = PRIORITY
    STATUS_CHOICES = STATUS.choices
    PRIORITY_CHOICES = PRIORITY.choices

    from_email = models.CharField(_("from"), max_length=320)
    # Lists of full addresses; JSON keeps display names with commas intact.
    to = AddressListField(_("to"), default=list, blank=True)
    cc = AddressListField(_("cc"), default=list, blank=True)
    bcc = AddressListField(_("bcc"), default=list, blank=True)
    subject = models.CharField(_("subject"), max_length=989, blank=True)
    message = models.TextField(_("message"), blank=True)
    html_message = models.TextField(_("HTML message"), blank=True)
    #: Alternatives other than text/html, as ``[[content, mimetype], ...]``.
    alternatives = models.JSONField(_("other alternatives"), default=list, blank=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=STATUS.choices, default=STATUS.queued)
    priority = models.PositiveSmallIntegerField(_("priority"), choices=PRIORITY.choices, default=PRIORITY.medium)
    created = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    last_updated = models.DateTimeField(_("last updated"), auto_now=True)
    scheduled_time = models.DateTimeField(_("scheduled time"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    number_of_retries = models.PositiveIntegerField(_("number of retries"), default=0)
    headers = models.JSONField(_("headers"), null=True, blank=True)
    context = models.JSONField(_("context"), null=True, blank=True)
    template = models.ForeignKey(
        "post_office.EmailTemplate",
        verbose_name=_("template"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="emails",
    )
    language = models.CharField(_("language"), max_length=12, blank=True, default="")
    #: The language of the template or translation actually used ('' for the base
    #: template): differs from ``language`` when a missing translation fell back.
    template_language = models.CharField(
        _("template language"),
        max_length=12,
        blank=True,
        default="",
        help_text=_("Language of the translation used; empty for the base template."),
    )
    #: A ``file:`` template rendered at delivery (``render_on_delivery``); ``template`` is then empty.
    template_file = models.CharField(
        _("file template"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("File template (file:...) this email is rendered from at delivery."),
    )
    backend_alias = models.CharField(_("backend alias"), max_length=64, blank=True, default="")
    message_id = models.CharField(_("Message-ID"), max_length=255, null=True, blank=True)
    # The claim: which worker run holds the email and until when.
    claimed_by = models.CharField(_("claimed by"), max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    #: What the recipient's provider reported later (django-post_office 3.9's field; the project records it).
    recipient_delivery_status = models.PositiveSmallIntegerField(
        _("recipient delivery status"), choices=RecipientDeliveryStatus.choices, null=True, blank=True
    )
    #: After a delivery that some recipients refused for now: the only ones the next attempt goes to.
    pending_recipients = models.JSONField(
        _("recipients still to deliver to"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Set after a partial delivery: the next attempt goes only to these (empty: to every recipient)."),
    )

    objects = EmailQuerySet.as_manager()

    #: Attachments loaded in bulk by the delivery worker's claim (None: not loaded).
    loaded_attachments: list[Attachment] | None = None
    #: Whether the email has attachments, as a claim made with UPDATE ... RETURNING found (None: not known).
    has_attachments: bool | None = None
    #: A claim left the bodies in the database (too large to load with the batch): loaded when sent.
    large_bodies: bool = False

    class Meta:
        app_label = "post_office"
        verbose_name = _("email")
        verbose_name_plural = _("emails")
        indexes = [
            models.Index(fields=["status", "priority", "scheduled_time"], name="post_office_email_queue"),
            LeaseIndex(fields=["lease_expires_at"], name="post_office_email_lease"),
            ClaimIndex(fields=["-priority", "id"], name="post_office_email_claim"),
            ExpiryIndex(fields=["expires_at"], name="post_office_email_expiry"),
            # The admin's list filters, each with the list's order (newest id first) after it, so a filtered
            # page and its capped count read only the rows they show (benchmarks/RESULTS.md); created and
            # template have their own indexes, status leads the first. message_id: exact lookups only (a
            # text field's db_index adds a LIKE index on PostgreSQL that mail.send's INSERT would write).
            models.Index(fields=["priority", "id"], name="post_office_email_priority"),
            models.Index(fields=["backend_alias", "id"], name="post_office_email_backend"),
            models.Index(fields=["language", "id"], name="post_office_email_language"),
            PresentIndex(fields=["scheduled_time"], name="post_office_email_scheduled"),
            models.Index(fields=["message_id"], name="post_office_email_message_id"),
        ]

    def __str__(self) -> str:
        return ", ".join(self.to) if self.to else f"Email #{self.pk}"

    def email_message(self) -> EmailMessage:
        """Return the Django message that delivery will send (rendered if needed)."""
        # A django-post_office door on the model: it reaches up into message/, so it imports when called.
        from .message.compose import build_message

        return build_message(self)

    # django-post_office 3.x name for the same thing.
    prepare_email_message = email_message

    def dispatch(
        self,
        log_level: int | None = None,
        disconnect_after_delivery: bool = True,
        commit: bool = True,
        connection: Any = None,
    ) -> int:
        """Send this email now through its backend alias (or ``connection``); record and return the status.

        With ``commit=False`` nothing is recorded and a failure raises its error.
        """
        # A django-post_office door on the model: it reaches up into delivery/, so it imports when called.
        from .delivery.worker import dispatch_one

        return dispatch_one(self, log_level=log_level, commit=commit, connection=connection)


class EmailTemplateQuerySet(models.QuerySet["EmailTemplate"]):
    """Validates syntax and invalidates cached lookups on the bulk paths too."""

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        objs = list(objs)
        for obj in objs:
            obj.prepare_for_save()
        created = super().bulk_create(objs, *args, **kwargs)
        _invalidate({obj.name for obj in objs})
        return created

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        objs = list(objs)
        for obj in objs:
            obj.language = normalize_language(obj.language)
            obj.validate_name()
            obj.validate_syntax()
        # Django runs it as update() calls, which invalidate the rows' old names; add the new ones.
        count = super().bulk_update(objs, fields, *args, **kwargs)
        _invalidate({obj.name for obj in objs})
        return count

    def update(self, **kwargs: Any) -> int:
        # Only plain values: bulk_update() passes expressions, validated before it calls this.
        check_template_syntax(
            {k: v for k, v in kwargs.items() if k in EmailTemplate.TEMPLATE_FIELDS and isinstance(v, str)}
        )
        if "name" in kwargs:
            check_database_template_name(kwargs["name"])
        if isinstance(kwargs.get("language"), str):
            kwargs["language"] = normalize_language(kwargs["language"])
        names = self._names(self)
        count = super().update(**kwargs)
        if isinstance(kwargs.get("name"), str):
            names.add(kwargs["name"])
        _invalidate(names)
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        names = self._names(self)
        with transaction.atomic(using=self.db):
            translations = _delete_translations_of(list(self.values_list("pk", flat=True)), self.db)
            deleted, per_model = super().delete()
        _invalidate(names)
        return _add_counts((deleted, per_model), translations)

    @staticmethod
    def _names(queryset: models.QuerySet[Any]) -> set[str]:
        """The names whose cached lookups a write to these rows makes stale (none without a cache)."""
        if not _caching():
            return set()
        return set(queryset.order_by().values_list("name", flat=True).distinct())

    bulk_create.alters_data = True  # type: ignore[attr-defined]
    bulk_update.alters_data = True  # type: ignore[attr-defined]
    update.alters_data = True  # type: ignore[attr-defined]
    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class EmailTemplateManager(TemplateNaturalKeys, models.Manager.from_queryset(EmailTemplateQuerySet)):  # type: ignore[misc]
    """``EmailTemplate.objects``: the queryset's methods and natural keys."""


def _delete_translations_of(pks: list[Any], using: str) -> tuple[int, dict[str, int]]:
    """Delete the translations of these templates before the templates themselves.

    Left to the cascade, MySQL and MariaDB (which cannot defer constraint checks)
    would first set the translations' ``default_template`` to NULL, which the
    check constraint forbids.
    """
    if not pks:
        return 0, {}
    return models.QuerySet(model=EmailTemplate, using=using).filter(default_template__in=pks).delete()


def _add_counts(first: tuple[int, dict[str, int]], second: tuple[int, dict[str, int]]) -> tuple[int, dict[str, int]]:
    per_model = dict(first[1])
    for label, count in second[1].items():
        per_model[label] = per_model.get(label, 0) + count
    return first[0] + second[0], per_model


def _caching() -> bool:
    return template_cache() is not None


#: Bumped whenever the cached value's shape changes, so old entries are never read.
CACHE_KEY_VERSION = 1


def template_cache_key(name: str) -> str:
    """The cache key of a template family: its name hashed, so no two names can share a key."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"post_office:template:v{CACHE_KEY_VERSION}:{digest}"


def _invalidate(names: Iterable[str | None]) -> None:
    """Drop the cached families of these template names, now and when the transaction commits.

    Every write to EmailTemplate, single or bulk, comes through here. The
    second deletion covers a process that reads the old rows (and caches them)
    between this write and its commit.
    """
    cache = template_cache()
    keys = sorted({template_cache_key(name) for name in names if name})
    if cache is None or not keys:
        return

    def delete() -> None:
        try:
            cache.delete_many(keys)
        except Exception:  # noqa: BLE001
            logger.warning("post_office: could not invalidate cached templates %s", keys, exc_info=True)

    delete()
    using = router.db_for_write(EmailTemplate)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(delete, using=using)


class EmailTemplate(EmailTemplateApi, models.Model):
    """A database template, or a translation of one (``default_template`` set)."""

    TEMPLATE_FIELDS = ("subject", "content", "html_content")

    name = models.CharField(_("name"), max_length=255, help_text=_("e.g. 'welcome_email'"))
    description = models.TextField(_("description"), blank=True, help_text=_("What this template is for"))
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    content = models.TextField(_("content"), blank=True)
    html_content = models.TextField(_("HTML content"), blank=True)
    language = models.CharField(
        _("language"),
        max_length=12,
        blank=True,
        default="",
        help_text=_("Empty for the base template; a language code for a translation."),
    )
    default_template = models.ForeignKey(
        "self",
        verbose_name=_("default template"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="translated_templates",
    )
    created = models.DateTimeField(_("created"), auto_now_add=True)
    last_updated = models.DateTimeField(_("last updated"), auto_now=True)

    objects = EmailTemplateManager()

    #: Who is saving (a user name): recorded as ``replaced_by`` of the version a save keeps.
    saved_by = ""

    class Meta:
        app_label = "post_office"
        verbose_name = _("email template")
        verbose_name_plural = _("email templates")
        ordering = ["name", "language"]
        constraints = [
            # Translations carry their base template's name, so this one
            # constraint allows exactly one base template (language '') per
            # name and one translation per language, on every database.
            models.UniqueConstraint(fields=["name", "language"], name="post_office_template_name_language"),
            models.CheckConstraint(
                condition=(Q(default_template__isnull=True) & Q(language=""))
                | (Q(default_template__isnull=False) & ~Q(language="")),
                name="post_office_template_base_has_no_language",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.language}"

    #: The fields a version keeps (EmailTemplateVersion): a save that changes one of them keeps the old text.
    VERSIONED_FIELDS = ("name", "description", "subject", "content", "html_content", "language")

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.prepare_for_save()
        previous = None
        if self.pk:
            previous = type(self)._base_manager.filter(pk=self.pk).values(*self.VERSIONED_FIELDS).first()
        old = previous["name"] if previous else None
        if previous is not None and any(previous[field] != getattr(self, field) for field in self.VERSIONED_FIELDS):
            # Every save that changes the text keeps the text it replaces (its history in the admin).
            using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
            with transaction.atomic(using=using):
                super().save(*args, **kwargs)
                EmailTemplateVersion.objects.using(using).create(
                    template=self, replaced_at=timezone.now(), replaced_by=self.saved_by[:150], **previous
                )
        else:
            super().save(*args, **kwargs)
        if old is not None and old != self.name and self.default_template_id is None:
            # Keep every translation under its base template's name.
            models.QuerySet(model=type(self)).filter(default_template=self).update(name=self.name)
        _invalidate({self.name, old})

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        name = self.name
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            translations = _delete_translations_of([self.pk], using) if self.pk else (0, {})
            result = _add_counts(super().delete(*args, **kwargs), translations)
        _invalidate({name})
        return result

    def validate_syntax(self) -> None:
        check_template_syntax({field: getattr(self, field) for field in self.TEMPLATE_FIELDS})

    def validate_name(self) -> None:
        """Refuse a name starting with ``file:``, which marks file templates."""
        check_database_template_name(self.name)

    def prepare_for_save(self) -> None:
        if self.default_template_id is not None and self.default_template is not None:
            self.name = self.default_template.name
        # One spelling per language ('pt-BR' and 'pt_BR' are 'pt-br'), so lookups and
        # the (name, language) constraint treat them as the same language.
        self.language = normalize_language(self.language)
        self.validate_name()
        self.validate_syntax()

    def clean(self) -> None:
        parent = self.default_template  # a translation (its form sets the template, saved or not)
        if parent is not None:
            # A translation always takes its template's name (prepare_for_save): the
            # name is the template form's to check, and a translation form has none.
            self.name = parent.name
        else:
            self.validate_name()
        if self.language:
            supported = supported_language(self.language)
            if not supported:
                raise ValidationError(
                    {"language": f"{self.language!r} is not in settings.LANGUAGES, nor a variant of one."}
                )
            # A variant the project does not list ('de-at') is a translation in the code Django picks for it ('de').
            self.language = supported
        if self.default_template_id and not self.language:
            raise ValidationError({"language": "A translation needs a language."})
        self.validate_syntax()


def get_attachment_storage() -> Storage:
    return AttachmentStorage()


class Attachment(AttachmentApi, models.Model):
    """A file attached to emails; identical content is stored once and shared."""

    file = models.FileField(_("file"), upload_to="post_office_attachments", storage=get_attachment_storage)
    name = models.CharField(_("name"), max_length=255, help_text=_("The original filename"))
    mimetype = models.CharField(_("MIME type"), max_length=255, blank=True, default="")
    headers = models.JSONField(_("headers"), null=True, blank=True)
    content_hash = models.CharField(_("SHA-256 of the content"), max_length=64, db_index=True, editable=False)
    emails = models.ManyToManyField(Email, related_name="attachments", verbose_name=_("emails"))
    created = models.DateTimeField(_("created"), auto_now_add=True)
    #: When an email last attached this row: enqueueing refreshes it, cleanup spares recent rows.
    last_used = models.DateTimeField(_("last used"), default=timezone.now, db_index=True, editable=False)

    #: ``cleanup_mail --delete-attachments`` deletes a row no email uses only once it is this old (last_used).
    ORPHAN_GRACE = datetime.timedelta(days=1)
    #: Enqueueing refreshes (and so locks) a reused row only when its last_used is older than this,
    #: which keeps it safe from cleanup for ORPHAN_GRACE - TOUCH_AFTER without a write per email.
    TOUCH_AFTER = datetime.timedelta(hours=1)

    class Meta:
        app_label = "post_office"
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name


class Log(models.Model):
    """One delivery attempt of one email."""

    #: Delivery attempts are sent or failed; the recipient's provider's reports keep django-post_office's values.
    STATUS_CHOICES = [(STATUS.sent, _("sent")), (STATUS.failed, _("failed")), *RecipientDeliveryStatus.choices]

    email = models.ForeignKey(Email, verbose_name=_("email"), related_name="logs", on_delete=models.CASCADE)
    date = models.DateTimeField(_("date"), auto_now_add=True, db_index=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=STATUS_CHOICES)
    exception_type = models.CharField(_("exception type"), max_length=255, blank=True)
    message = models.TextField(_("message"), blank=True)
    #: The claim (worker run) that made the attempt; empty for attempts made outside a claim.
    worker = models.CharField(_("worker"), max_length=100, blank=True, default="", db_default="")

    class Meta:
        app_label = "post_office"
        verbose_name = _("log")
        verbose_name_plural = _("logs")
        ordering = ["-date"]

    def __str__(self) -> str:
        return str(self.date)


class EmailTemplateVersion(models.Model):
    """A template or translation as it was before one of its saves (its history in the admin)."""

    template = models.ForeignKey(
        EmailTemplate, verbose_name=_("template"), related_name="versions", on_delete=models.CASCADE
    )
    #: When this version was replaced by a save (it was the template's content until then).
    replaced_at = models.DateTimeField(_("replaced at"), db_index=True)
    #: Who made the save that replaced it ('' when not saved by a signed-in user).
    replaced_by = models.CharField(_("replaced by"), max_length=150, blank=True, default="")
    name = models.CharField(_("name"), max_length=255)
    description = models.TextField(_("description"), blank=True)
    subject = models.CharField(_("subject"), max_length=255, blank=True)
    content = models.TextField(_("content"), blank=True)
    html_content = models.TextField(_("HTML content"), blank=True)
    language = models.CharField(_("language"), max_length=12, blank=True, default="")

    class Meta:
        app_label = "post_office"
        verbose_name = _("template version")
        verbose_name_plural = _("template versions")
        ordering = ["-replaced_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}] {self.replaced_at:%Y-%m-%d %H:%M:%S}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of a long-running delivery worker (shown in the admin)."""

    name = models.CharField(_("worker"), max_length=200, unique=True)
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    started = models.DateTimeField(_("started"))
    last_seen = models.DateTimeField(_("last seen"), db_index=True)
    state = models.CharField(_("state"), max_length=32, default="running")
    sent = models.PositiveBigIntegerField(_("sent"), default=0)
    failed = models.PositiveBigIntegerField(_("failed"), default=0)
    requeued = models.PositiveBigIntegerField(_("requeued"), default=0)

    class Meta:
        app_label = "post_office"
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.name


class DeliveryHealth(WorkerHeartbeat):
    """No data of its own: the admin's "Delivery health" page hangs on it (index link, permissions)."""

    class Meta:
        proxy = True
        app_label = "post_office"
        # Who may see the page is decided by the permissions on Email, not by its own.
        default_permissions = ()
        verbose_name = _("delivery health")
        verbose_name_plural = _("delivery health")


class DeliverySwitch(models.Model):
    """A database-wide switch: while ``paused``, workers deliver nothing (enqueueing goes on)."""

    name = models.CharField(_("name"), max_length=50, unique=True, default="delivery")
    paused = models.BooleanField(_("paused"), default=False)
    changed = models.DateTimeField(_("changed"), auto_now=True)
    reason = models.CharField(_("reason"), max_length=255, blank=True)

    class Meta:
        app_label = "post_office"
        verbose_name = _("delivery switch")
        verbose_name_plural = _("delivery switches")

    def __str__(self) -> str:
        return f"{self.name}: {'paused' if self.paused else 'running'}"

    @classmethod
    def is_paused(cls) -> bool:
        """True when delivery is paused by the setting or the database switch."""
        return po_settings.PAUSED or cls.objects.filter(name="delivery", paused=True).exists()

    @classmethod
    def set_paused(cls, paused: bool, reason: str = "") -> None:
        cls.objects.update_or_create(name="delivery", defaults={"paused": paused, "reason": reason})
