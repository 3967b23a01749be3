"""What code written for django-post_office does with the models, as mixins of them.

* ``Email`` created through the ORM (``Email.objects.create(to="ann@example.com", ...)``):
  recipients given as text become lists (split at commas, never inside a quoted
  display name), the columns django-post_office left empty get their meaning
  (priority medium, no retries, no status: failed, as it never sent those), and
  the email is checked as ``mail.send`` checks it (addresses, subject and
  headers without line breaks, schedule before expiry): a bad one raises the
  same :class:`~post_office.exceptions.InvalidEmail` errors, Django
  ``ValidationError`` s. Fixtures (``loaddata``) are converted the same way, unchecked.
* ``EmailTemplate`` natural keys ``(name, language, default_template)``, so
  fixtures made with ``dumpdata --natural-foreign --natural-primary`` load.
* ``Attachment.name`` defaults to the file's name, and a file saved through
  the ORM is stored under a random directory, so its name cannot be guessed.
"""

from __future__ import annotations

import os
from typing import Any

from django.db.models.signals import pre_save

from .addresses import address_list
from .choices import PRIORITY, STATUS
from .languages import normalize_language
from .storage import random_path
from .validation import (
    check_no_line_breaks,
    check_schedule,
    parse_address,
    parse_addresses,
    parse_headers,
    parse_priority,
)

__all__ = ["AttachmentApi", "EmailApi", "EmailTemplateApi", "TemplateNaturalKeys", "get_upload_path"]

RECIPIENT_FIELDS = ("to", "cc", "bcc")


class EmailApi:
    """django-post_office's behaviour of ``Email`` beyond its fields."""

    #: True on emails the entry points built and checked (mail.send and friends): their insert is not checked again.
    checked = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {getattr(self, 'to', None)}>"

    def clean(self) -> None:
        """Refuse a schedule after the expiry (``full_clean()``, model forms)."""
        check_schedule(self.scheduled_time, self.expires_at)  # type: ignore[attr-defined]

    def save(self, *args: Any, **kwargs: Any) -> None:
        fill_legacy_columns(self)
        if self._state.adding and not self.checked and not kwargs.get("update_fields"):  # type: ignore[attr-defined]
            check_created_email(self)
        super().save(*args, **kwargs)  # type: ignore[misc]


def fill_legacy_columns(email: Any) -> None:
    """Recipients given as text become lists; NULLs django-post_office allowed get their meaning.

    Only loaded columns are looked at: a deferred one is not read for this.
    """
    loaded = email.__dict__
    for field in RECIPIENT_FIELDS:
        if field in loaded:
            loaded[field] = [] if loaded[field] is None else address_list(loaded[field])
    for field, meaning in NULL_MEANINGS.items():
        if field in loaded and loaded[field] is None:
            loaded[field] = meaning


#: What django-post_office meant by NULL in columns that have a value here. An email without a status
#: is one whose immediate ('now') sending never recorded a result: it never delivered it again.
NULL_MEANINGS = {"priority": PRIORITY.medium, "number_of_retries": 0, "status": STATUS.failed}


def check_created_email(email: Any) -> None:
    """Check an email created through the ORM as ``mail.send`` checks its arguments."""
    email.from_email = parse_address(email.from_email, "from_email")
    for field in RECIPIENT_FIELDS:
        setattr(email, field, parse_addresses(getattr(email, field), field))
    check_no_line_breaks("subject", email.subject)
    email.headers = parse_headers(email.headers)
    email.priority = parse_priority(email.priority)
    check_schedule(email.scheduled_time, email.expires_at)


def _fill_fixture_rows(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    # loaddata saves rows without calling save(): django-post_office's fixtures hold its text and NULL columns.
    if raw:
        fill_legacy_columns(instance)


pre_save.connect(_fill_fixture_rows, sender="post_office.Email", dispatch_uid="post_office.email_fixture_rows")


class EmailTemplateApi:
    """Natural keys: a template is ``(name, language, the natural key of its base template or None)``."""

    def natural_key(self) -> tuple[str, str, tuple[Any, ...] | None]:
        parent = self.default_template.natural_key() if self.default_template_id else None  # type: ignore[attr-defined]
        return (self.name, self.language, parent)  # type: ignore[attr-defined]


class TemplateNaturalKeys:
    """The manager side of natural keys, as django-post_office's ``EmailTemplateManager`` offers it."""

    def get_by_natural_key(self, name: str, language: str = "", default_template: Any = None) -> Any:
        """The template called ``name`` in ``language`` ('' for the base template).

        A name and a language identify one template here, so ``default_template``
        (None, the base template's natural key, or its id, as fixtures hold it) is
        accepted and not needed.
        """
        return self.get(name=name, language=normalize_language(language or ""))  # type: ignore[attr-defined]


class AttachmentApi:
    """``name`` defaults to the file's name; a file saved here gets a random directory."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        file = self.file  # type: ignore[attr-defined]
        if not self.name and file.name:  # type: ignore[has-type]
            self.name = os.path.basename(file.name)
        super().save(*args, **kwargs)  # type: ignore[misc]


def get_upload_path(instance: Any, filename: str) -> str:
    """django-post_office's ``upload_to``: give ``instance`` the file's name unless it has one; a random path."""
    if not instance.name:
        instance.name = filename
    return random_path(filename)
