"""django-mailer's stored messages: base64 text of a pickled Django ``EmailMessage``, read safely.

Unpickling runs whatever a pickle names, so the unpickler here finds only the
classes a Django email message is made of (the message classes, their
attachment and alternative tuples, safe strings, the standard library's MIME
parts with their policies, charsets and headers) and refuses every other name:
a row that names anything else is reported, not run.
"""

from __future__ import annotations

import base64
import binascii
import email._header_value_parser as header_parser
import importlib
import io
import pickle
from typing import Any

from django.core.mail import EmailMessage

#: The names a pickled Django message may use, by module (the parser's and header registry's are checked by kind).
ALLOWED: dict[str, frozenset[str]] = {
    "django.core.mail.message": frozenset(
        {
            "EmailMessage",
            "EmailMultiAlternatives",
            "EmailAttachment",
            "EmailAlternative",
            "SafeMIMEText",
            "SafeMIMEMultipart",
            "SafeMIMEMessage",
        }
    ),
    "django.utils.safestring": frozenset({"SafeString", "SafeText"}),
    "email.message": frozenset({"Message", "EmailMessage", "MIMEPart"}),
    "email.mime.base": frozenset({"MIMEBase"}),
    "email.mime.nonmultipart": frozenset({"MIMENonMultipart"}),
    "email.mime.multipart": frozenset({"MIMEMultipart"}),
    "email.mime.text": frozenset({"MIMEText"}),
    "email.mime.image": frozenset({"MIMEImage"}),
    "email.mime.audio": frozenset({"MIMEAudio"}),
    "email.mime.application": frozenset({"MIMEApplication"}),
    "email.mime.message": frozenset({"MIMEMessage"}),
    "email._policybase": frozenset({"Compat32"}),
    "email.policy": frozenset({"Compat32", "EmailPolicy"}),
    "email.charset": frozenset({"Charset"}),
    "email.header": frozenset({"Header"}),
    # Plain containers, and what protocols 0 and 1 use to build an object of an allowed class.
    "builtins": frozenset({"bytearray", "set", "frozenset", "object"}),
    "copyreg": frozenset({"_reconstructor"}),
    # The same under Python 2's names, which pickles of protocols 0 to 2 use.
    "__builtin__": frozenset({"bytearray", "set", "frozenset", "object"}),
    "copy_reg": frozenset({"_reconstructor"}),
}


class Unreadable(Exception):
    """A stored message that cannot be turned back into a Django message; says why."""


class Refused(Unreadable):
    """The pickle names something a Django message is not made of."""


class MessageUnpickler(pickle.Unpickler):
    """An unpickler that finds only the names in :data:`ALLOWED` (and the email parser's own token classes)."""

    def find_class(self, module: str, name: str) -> Any:
        if _allowed(module, name):
            return super().find_class(module, name)
        raise Refused(f"its pickle names {module}.{name}, which is not part of a Django email message; not loaded")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("its pickle refers to a persistent object; not loaded")


def _allowed(module: str, name: str) -> bool:
    if name in ALLOWED.get(module, ()):
        return True
    if module not in ("email.headerregistry", "email._header_value_parser") or name.startswith("__"):
        return False
    found = getattr(importlib.import_module(module), name, None)
    if module == "email.headerregistry":
        # Headers of the modern email API: the registry rebuilds each one from its classes and value.
        return name == "_reconstruct_header" or (isinstance(found, type) and found.__module__ == "email.headerregistry")
    return isinstance(found, type) and issubclass(found, (header_parser.TokenList, header_parser.Terminal))


def unpickle(data: bytes) -> Any:
    """Load a pickle with :class:`MessageUnpickler`."""
    return MessageUnpickler(io.BytesIO(data)).load()


def load_message(text: str | bytes | None) -> EmailMessage:
    """The Django message stored in django-mailer's ``message_data``; raise Unreadable saying why not.

    django-mailer writes base64 text of the pickle; rows written by its early
    versions hold the pickle itself. Both are read.
    """
    if text is None or text in ("", b""):
        raise Unreadable("its message_data is empty")
    raw = _as_bytes(text)
    problems = []
    for candidate in (_base64(raw), raw):
        if candidate is None:
            continue
        try:
            loaded = unpickle(candidate)
        except Refused:
            raise
        except Exception as error:  # noqa: BLE001 - any fault of a corrupt pickle is reported, never raised
            problems.append(f"{type(error).__name__}: {error}")
            continue
        if not isinstance(loaded, EmailMessage):
            raise Unreadable(f"its message_data holds a {type(loaded).__name__}, not a Django EmailMessage")
        return loaded
    raise Unreadable(f"its message_data cannot be unpickled ({problems[0] if problems else 'not base64'})")


def _as_bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("latin-1")  # base64 is ASCII; an early version's raw pickle is bytes read as text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64(raw: bytes) -> bytes | None:
    try:
        return base64.b64decode(raw, validate=False) if raw.strip() else None
    except (binascii.Error, ValueError):
        return None
