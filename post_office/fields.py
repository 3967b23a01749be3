"""``CommaSeparatedEmailField``: django-post_office's recipients column, for projects' own models.

This app keeps its own recipients as JSON lists; the field is here so that
models and migrations of projects that used it keep importing and working.
It stores a list of addresses as one text (``a@example.com, Ann <ann@example.com>``)
and gives it back as a list. Unlike django-post_office's, a display name with a
comma stays one address (it is stored quoted), and ``dumpdata`` writes the text
that ``loaddata`` reads back.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import JSONField, TextField, lookups
from django.db.models.fields.json import DataContains, JSONExact
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _

from .addresses import join_address_list, split_address_list
from .validators import validate_comma_separated_emails

__all__ = ["AddressListField", "CommaSeparatedEmailField"]


class CommaSeparatedEmailField(TextField):
    """A list of email addresses stored as comma-separated text (always ``blank=True``)."""

    default_validators = [validate_comma_separated_emails]
    description = _("Comma-separated emails")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blank"] = True
        super().__init__(*args, **kwargs)

    def formfield(self, **kwargs: Any) -> Any:
        defaults: dict[str, Any] = {"error_messages": {"invalid": _("Only comma separated emails are allowed.")}}
        defaults.update(kwargs)
        return super().formfield(**defaults)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return self.to_python(value)

    def to_python(self, value: Any) -> Any:
        """Text becomes a list of whole addresses; a list (or None) stays as it is."""
        if isinstance(value, str):
            return split_address_list(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        """A list is stored joined; text (``filter(to='ann@example.com')``) is used as it is."""
        if value is None or isinstance(value, str):
            return value
        return join_address_list(str(item) for item in value)

    def value_to_string(self, obj: Any) -> str:
        """What ``dumpdata`` writes: the stored text, which ``loaddata`` reads back as the same list."""
        value = self.value_from_object(obj)
        return value if isinstance(value, str) else self.get_prep_value(value) or ""


class AddressListField(JSONField):
    """``Email.to``, ``cc`` and ``bcc``: a JSON list of whole addresses that answers django-post_office's queries.

    Its recipients were text, so projects filter on them as text; both still work:

    * ``filter(to="ann@example.com")`` (and ``"a@x, b@y"``): the list of those addresses, exactly;
    * ``filter(to__contains="ann@example.com")``: the text appears in one of the addresses.

    A list on the right keeps the JSON meaning (``to=["a@x"]``; ``to__contains=["a@x"]`` where the
    database has JSON containment).
    """


@AddressListField.register_lookup
class AddressExact(JSONExact):
    def get_prep_lookup(self) -> Any:
        if isinstance(self.rhs, str):
            self.rhs = split_address_list(self.rhs)
        return super().get_prep_lookup()


@AddressListField.register_lookup
class AddressContains(DataContains):
    """Text on the right: a substring of the stored addresses (as django-post_office's text column answered)."""

    def get_prep_lookup(self) -> Any:
        if isinstance(self.rhs, str):
            return self.rhs
        return super().get_prep_lookup()

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        if isinstance(self.rhs, str):
            # The text as it appears inside the stored JSON: quotes escaped; non-ASCII escaped too where
            # the column holds Django's json.dumps() output (PostgreSQL's jsonb prints it as it is).
            inside = json.dumps(self.rhs, ensure_ascii=connection.vendor != "postgresql")[1:-1]
            return compiler.compile(lookups.Contains(Cast(self.lhs, TextField()), inside))
        return super().as_sql(compiler, connection)

    def as_postgresql(self, compiler: Any, connection: Any) -> Any:
        if isinstance(self.rhs, str):
            return self.as_sql(compiler, connection)
        return super().as_postgresql(compiler, connection)
