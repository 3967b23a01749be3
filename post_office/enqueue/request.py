"""What a caller asks to queue: one typed request per email, shared by every entry point.

``mail.send`` and ``send_many`` build it from their arguments, the queueing
backend from a Django message (with the parts only a message has:
``attachment_data`` and ``alternatives``); :mod:`post_office.enqueue.prepare`
validates it. Values are the caller's, unchecked.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import InvalidArgument
from ..message.fields import AttachmentData
from ..validation import check_log_level


@dataclass
class EmailRequest:
    """``mail.send``'s arguments for one email, plus what a Django message brings."""

    recipients: str | Sequence[str] | None = None
    sender: str | None = None
    #: A template name (``'file:...'`` for a file template) or an EmailTemplate.
    template: Any = None
    context: Mapping[str, Any] | None = None
    subject: str = ""
    message: str = ""
    html_message: str = ""
    scheduled_time: datetime.datetime | datetime.date | None = None
    expires_at: datetime.datetime | datetime.date | None = None
    headers: Mapping[str, str] | None = None
    priority: str | int | None = None
    #: django-post_office's forms: ``{name: path | file | {'file', 'mimetype', 'headers'}}`` or tuples.
    attachments: Any = None
    render_on_delivery: bool = False
    cc: str | Sequence[str] | None = None
    bcc: str | Sequence[str] | None = None
    language: str = ""
    backend: str = ""
    #: Attachments already read from a Django message.
    attachment_data: list[AttachmentData] = field(default_factory=list)
    #: A Django message's alternatives other than its HTML, as ``[[content, mimetype], ...]``.
    alternatives: list[list[str]] = field(default_factory=list)

    @classmethod
    def from_kwargs(cls, kwargs: Any, field_name: str) -> EmailRequest:
        """A request from a dict of ``send()`` arguments (``send_many``'s items); ``field_name`` names it in errors."""
        if not isinstance(kwargs, Mapping):
            raise InvalidArgument(field_name, kwargs, "must be a dict of send() arguments")
        unknown = [name for name in kwargs if name not in SEND_ARGUMENTS]
        if unknown:
            raise InvalidArgument(field_name, sorted(unknown, key=repr), "are not arguments of send()")
        # log_level and commit concern the call, not the email: send_many checks log_level and ignores both.
        check_log_level(kwargs.get("log_level"), f"{field_name}.log_level")
        return cls(**{name: value for name, value in kwargs.items() if name in _FIELDS})


_FIELDS = frozenset(f.name for f in dataclasses.fields(EmailRequest)) - {"attachment_data", "alternatives"}
#: Every argument ``send()`` takes (``send_many``'s items may use each).
SEND_ARGUMENTS = _FIELDS | {"log_level", "commit"}
