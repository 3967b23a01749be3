"""One tree of errors.

Every error a caller can cause by passing bad input is a :class:`PostOfficeError`.
Input errors are also Django ``ValidationError`` s (as in django-post_office)
and ``ValueError`` s, so existing ``except`` clauses keep working. Configuration
errors subclass ``ImproperlyConfigured`` and stay outside the tree.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError

#: How much of a value an error message shows: enough to recognise it, never a whole 100,000-character subject.
SHOWN_LENGTH = 80


def shown(value: Any) -> str:
    """``repr(value)`` for an error message: cut to about :data:`SHOWN_LENGTH` characters, never raising."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a caller's object whose repr() fails is still named
        return f"<{type(value).__name__} object (repr() failed)>"
    if len(text) <= SHOWN_LENGTH:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: SHOWN_LENGTH - 1]}…{size}"


class PostOfficeError(Exception):
    """Root of every error this app raises about a caller's input."""


class InvalidEmail(PostOfficeError, ValidationError, ValueError):
    """An email could not be queued: names the field, the value and the reason.

    Nothing is stored when this is raised.
    """

    code = "invalid"

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        text = f"{field}: {shown(value)} {reason}" if value is not None else f"{field}: {reason}"
        ValidationError.__init__(self, text, code=self.code)

    def __str__(self) -> str:
        return str(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidAddress(InvalidEmail):
    code = "invalid_address"


class InvalidHeader(InvalidEmail):
    code = "invalid_header"


class InvalidPriority(InvalidEmail):
    code = "invalid_priority"


class InvalidSchedule(InvalidEmail):
    code = "invalid_schedule"


class UnknownBackend(InvalidEmail):
    code = "unknown_backend"


class TemplateConflict(InvalidEmail):
    code = "template_conflict"


class UnknownTemplate(InvalidEmail, ObjectDoesNotExist):
    """No template with that name (or no translation in that language)."""

    code = "unknown_template"


class InvalidContext(InvalidEmail):
    code = "invalid_context"


class MissingVariables(InvalidContext):
    """Strict mode: the template uses variables the context does not have (``value`` lists them)."""

    code = "missing_variables"


class InvalidInlineImage(InvalidEmail):
    """An ``{% inline_image %}`` source cannot be found or is not an image."""

    code = "invalid_inline_image"


class TemplateRenderError(PostOfficeError, ValueError):
    """Rendering a template raised an error; at delivery this fails the email for good."""

    def __init__(self, template: str, error: BaseException) -> None:
        self.template = template
        self.error = error
        super().__init__(f"template {template!r} could not be rendered: {type(error).__name__}: {error}")


class MissingSender(InvalidEmail):
    code = "missing_sender"


class InvalidAttachment(InvalidEmail):
    code = "invalid_attachment"


class AttachmentTooLarge(InvalidAttachment):
    """An attachment is bigger than ``POST_OFFICE['MAX_ATTACHMENT_SIZE']``; the message names both sizes."""

    code = "attachment_too_large"


class MessageTooLarge(InvalidEmail):
    """Subject, bodies and attachments together are bigger than ``POST_OFFICE['MAX_MESSAGE_SIZE']``."""

    code = "message_too_large"


class AttachmentMissing(PostOfficeError):
    """At delivery, an attachment's file is gone from the storage: permanent, as the file will not come back."""

    def __init__(self, name: str, file_name: str, storage: str) -> None:
        self.name = name
        self.file_name = file_name
        super().__init__(f"attachment {name!r}: its file {file_name!r} is missing from the storage {storage!r}")


class InvalidArgument(InvalidEmail):
    """Any other argument that cannot be accepted (wrong type, unknown keyword)."""

    code = "invalid_argument"


class TemplateSyntaxInvalid(PostOfficeError, ValidationError, ValueError):
    """A template field does not compile; names the field and the line."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        ValidationError.__init__(self, {field: [message] for field, message in errors.items()})

    def __str__(self) -> str:
        return "; ".join(f"{field}: {message}" for field, message in self.errors.items())


class DeliveryConfigurationError(ImproperlyConfigured):
    """A delivery backend alias is configured wrongly (not the caller's input)."""


class NoRecipientLeft(PostOfficeError):
    """Every recipient of an email is on the do-not-send list: it is failed, never sent (permanent)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        super().__init__(f"every recipient is on the do-not-send list ({', '.join(addresses)}); the email is not sent")
