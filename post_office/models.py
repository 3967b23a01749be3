"""The queue's data: Email, EmailTemplate, Attachment and Log."""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any

from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import settings as po_settings

if TYPE_CHECKING:
    from django.core.mail import EmailMessage


class STATUS(models.IntegerChoices):
    """Delivery state; the first four keep django-post_office's values."""

    sent = 0, _("sent")
    failed = 1, _("failed")
    queued = 2, _("queued")
    requeued = 3, _("requeued")
    sending = 4, _("sending")


class PRIORITY(models.IntegerChoices):
    low = 0, _("low")
    medium = 1, _("medium")
    high = 2, _("high")
    now = 3, _("now")


#: States a worker may claim from.
CLAIMABLE = (STATUS.queued, STATUS.requeued)


class EmailQuerySet(models.QuerySet["Email"]):
    def queued(self) -> EmailQuerySet:
        """Emails waiting for delivery, due or not."""
        return self.filter(status__in=CLAIMABLE)

    def due(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Queued emails whose time has come and which have not expired."""
        now = now or timezone.now()
        return (
            self.queued()
            .filter(Q(scheduled_time__isnull=True) | Q(scheduled_time__lte=now))
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        )

    def expired(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Queued emails whose expiry has passed: they are never delivered."""
        return self.queued().filter(expires_at__lte=now or timezone.now())

    def stale_leases(self, now: datetime.datetime | None = None) -> EmailQuerySet:
        """Emails claimed by a worker whose lease ran out (the worker died)."""
        return self.filter(status=STATUS.sending, lease_expires_at__lt=now or timezone.now())

    def in_sending_order(self) -> EmailQuerySet:
        return self.order_by(*po_settings.SENDING_ORDER, "id")


class Email(models.Model):
    """One queued, sent or failed email."""

    STATUS = STATUS
    PRIORITY = PRIORITY
    STATUS_CHOICES = STATUS.choices
    PRIORITY_CHOICES = PRIORITY.choices

    from_email = models.CharField(_("from"), max_length=320)
    # Lists of full addresses; JSON keeps display names with commas intact.
    to = models.JSONField(_("to"), default=list, blank=True)
    cc = models.JSONField(_("cc"), default=list, blank=True)
    bcc = models.JSONField(_("bcc"), default=list, blank=True)
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
    backend_alias = models.CharField(_("backend alias"), max_length=64, blank=True, default="")
    message_id = models.CharField(_("Message-ID"), max_length=255, null=True, blank=True, db_index=True)
    # The claim: which worker run holds the email and until when.
    claimed_by = models.CharField(_("claimed by"), max_length=100, blank=True, default="")
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)

    objects = EmailQuerySet.as_manager()

    #: Attachments loaded in bulk by the delivery worker's claim (None: not loaded).
    loaded_attachments: list[Any] | None = None

    class Meta:
        app_label = "post_office"
        verbose_name = _("email")
        verbose_name_plural = _("emails")
        indexes = [
            models.Index(fields=["status", "priority", "scheduled_time"], name="post_office_email_queue"),
            models.Index(fields=["status", "lease_expires_at"], name="post_office_email_lease"),
        ]

    def __str__(self) -> str:
        return ", ".join(self.to) if self.to else f"Email #{self.pk}"

    def email_message(self) -> EmailMessage:
        """Return the Django message that delivery will send (rendered if needed)."""
        from .mime import build_message

        return build_message(self)

    # django-post_office 3.x name for the same thing.
    prepare_email_message = email_message

    def dispatch(
        self,
        log_level: int | None = None,
        disconnect_after_delivery: bool = True,
        commit: bool = True,
    ) -> int:
        """Send this email now through its backend alias; record and return the status."""
        from .delivery import dispatch_one

        return dispatch_one(self, log_level=log_level, commit=commit)


class EmailTemplateQuerySet(models.QuerySet["EmailTemplate"]):
    """Validates template syntax on bulk paths too."""

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        objs = list(objs)
        for obj in objs:
            obj.prepare_for_save()
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        objs = list(objs)
        for obj in objs:
            obj.validate_syntax()
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        from .rendering import validate_template_fields

        validate_template_fields({k: v for k, v in kwargs.items() if k in EmailTemplate.TEMPLATE_FIELDS})
        return super().update(**kwargs)


class EmailTemplate(models.Model):
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

    objects = EmailTemplateQuerySet.as_manager()

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
        return f"{self.name} [{self.language}]" if self.language else self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.prepare_for_save()
        renamed = False
        if self.pk and self.default_template_id is None:
            old = type(self).objects.filter(pk=self.pk).values_list("name", flat=True).first()
            renamed = old is not None and old != self.name
        super().save(*args, **kwargs)
        if renamed:
            # Keep every translation under its base template's name.
            models.QuerySet(model=type(self)).filter(default_template=self).update(name=self.name)

    def validate_syntax(self) -> None:
        from .rendering import validate_template_fields

        validate_template_fields({field: getattr(self, field) for field in self.TEMPLATE_FIELDS})

    def prepare_for_save(self) -> None:
        if self.default_template_id is not None and self.default_template is not None:
            self.name = self.default_template.name
        self.validate_syntax()

    def clean(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ValidationError

        codes = {code for code, _name in settings.LANGUAGES}
        if self.language and self.language not in codes:
            raise ValidationError({"language": f"{self.language!r} is not in settings.LANGUAGES."})
        if self.default_template_id and not self.language:
            raise ValidationError({"language": "A translation needs a language."})
        self.validate_syntax()


class AttachmentStorage(Storage):
    """The storage named by ``POST_OFFICE['FILE_STORAGE']``, looked up at each use."""

    def _target(self) -> Storage:
        return storages[po_settings.FILE_STORAGE]

    def open(self, name: str, mode: str = "rb") -> Any:
        return self._target().open(name, mode)

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        return self._target().save(name, content, max_length=max_length)

    def delete(self, name: str) -> None:
        self._target().delete(name)

    def exists(self, name: str) -> bool:
        return self._target().exists(name)

    def size(self, name: str) -> int:
        return self._target().size(name)

    def url(self, name: str | None) -> str:
        return self._target().url(name)

    def path(self, name: str) -> str:
        return self._target().path(name)

    def generate_filename(self, filename: str | os.PathLike[str]) -> str:
        return self._target().generate_filename(filename)


def get_attachment_storage() -> Storage:
    return AttachmentStorage()


class Attachment(models.Model):
    """A file attached to emails; identical content is stored once and shared."""

    file = models.FileField(_("file"), upload_to="post_office_attachments", storage=get_attachment_storage)
    name = models.CharField(_("name"), max_length=255, help_text=_("The original filename"))
    mimetype = models.CharField(_("MIME type"), max_length=255, blank=True, default="")
    headers = models.JSONField(_("headers"), null=True, blank=True)
    content_hash = models.CharField(_("SHA-256 of the content"), max_length=64, db_index=True, editable=False)
    emails = models.ManyToManyField(Email, related_name="attachments", verbose_name=_("emails"))
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        app_label = "post_office"
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name


class Log(models.Model):
    """One delivery attempt of one email."""

    STATUS_CHOICES = [(STATUS.sent, _("sent")), (STATUS.failed, _("failed"))]

    email = models.ForeignKey(Email, verbose_name=_("email"), related_name="logs", on_delete=models.CASCADE)
    date = models.DateTimeField(_("date"), auto_now_add=True, db_index=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=STATUS_CHOICES)
    exception_type = models.CharField(_("exception type"), max_length=255, blank=True)
    message = models.TextField(_("message"), blank=True)

    class Meta:
        app_label = "post_office"
        verbose_name = _("log")
        verbose_name_plural = _("logs")
        ordering = ["-date"]

    def __str__(self) -> str:
        return f"{self.get_status_display()} {self.date:%Y-%m-%d %H:%M:%S}"


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
