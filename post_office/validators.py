"""django-post_office's field validators, for forms and models that use them.

Each raises a Django ``ValidationError`` (the specific
:class:`~post_office.exceptions.InvalidEmail` subclass where there is one), and
checks what ``mail.send`` checks: an address with a line break or two
addresses in one are refused.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .exceptions import InvalidEmail, TemplateSyntaxInvalid
from .validation import check_template_syntax, parse_address

__all__ = ["validate_comma_separated_emails", "validate_email_with_name", "validate_template_syntax"]


def validate_email_with_name(value: Any) -> None:
    """Accept one address, bare (``ann@example.com``) or with a display name (``Ann <ann@example.com>``)."""
    parse_address(value, "email")


def validate_comma_separated_emails(value: Any) -> None:
    """Accept a list or tuple of addresses, each as :func:`validate_email_with_name` accepts it."""
    if not isinstance(value, (list, tuple)):
        raise ValidationError(_("Email list must be a list/tuple."), code="invalid")
    for address in value:
        try:
            parse_address(address, "email")
        except InvalidEmail as error:
            raise ValidationError(
                _("Invalid email: %(address)s (%(reason)s)"),
                code="invalid",
                params={"address": address, "reason": error.reason},
            ) from None


def validate_template_syntax(source: Any) -> None:
    """Accept template code that compiles with the engine database templates use."""
    try:
        check_template_syntax({"template": source})
    except TemplateSyntaxInvalid as error:
        raise ValidationError(error.errors["template"], code="invalid") from None
