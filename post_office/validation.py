"""Input checks shared by every entry point (send, send_many, backend, helpers, models).

Each function either returns the normalised value or raises a specific
:class:`~post_office.exceptions.InvalidEmail` naming the field and the value.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterable, Mapping
from email.utils import getaddresses
from typing import Any

from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.template import Engine, Template, TemplateSyntaxError
from django.utils import timezone
from django.utils.functional import Promise

from .choices import PRIORITY
from .exceptions import (
    InvalidAddress,
    InvalidArgument,
    InvalidContext,
    InvalidHeader,
    InvalidPriority,
    InvalidSchedule,
    TemplateSyntaxInvalid,
)
from .languages import language_codes, normalize_language
from .restricted import database_template_engine

#: Every character ``str.splitlines()`` breaks a line at, and NUL, by name. None may appear in a
#: header, an address or a MIME part header: mail servers read some of them as the end of a line.
HEADER_BREAKS = {
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x0b": "LINE TABULATION",
    "\x0c": "FORM FEED",
    "\x1c": "FILE SEPARATOR",
    "\x1d": "GROUP SEPARATOR",
    "\x1e": "RECORD SEPARATOR",
    "\x85": "NEXT LINE",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
    "\x00": "NUL",
}
_HEADER_BREAK = re.compile(f"[{re.escape(''.join(HEADER_BREAKS))}]")


def header_break(text: str) -> str | None:
    """Why ``text`` cannot go in a header (its first line break or NUL, shown), or None."""
    found = _HEADER_BREAK.search(text)
    if found is None:
        return None
    char = found.group()
    return (
        f"contains a line break or NUL: {char!r} (U+{ord(char):04X} {HEADER_BREAKS[char]}) at position {found.start()}"
    )


def _text(field: str, value: Any) -> str:
    if isinstance(value, Promise):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidArgument(field, value, f"must be a string, not {type(value).__name__}")
    return value


def parse_address(value: Any, field: str) -> str:
    """Check one address (``a@b.c`` or ``"Doe, John" <a@b.c>``) and return it stripped.

    Display names may contain commas when quoted, and domains may be
    internationalised; anything that is not exactly one RFC 5322 address is refused.
    """
    text = _text(field, value)
    problem = header_break(text)
    if problem:
        raise InvalidAddress(field, value, problem)
    text = text.strip()
    if not text:
        raise InvalidAddress(field, value, "is empty")
    parsed = getaddresses([text])
    if len(parsed) != 1:
        raise InvalidAddress(field, value, "is not a single email address (quote display names containing commas)")
    name, addr = parsed[0]
    if not addr or "@" not in addr:
        raise InvalidAddress(field, value, "is not a valid email address")
    try:
        validate_email(addr)
    except ValidationError:
        raise InvalidAddress(field, value, "is not a valid email address") from None
    if "<" in text and not text.rstrip().endswith(">"):
        raise InvalidAddress(field, value, "is not a valid email address")
    if "<" not in text and text != addr:
        # A bare address with junk around it ("a@b.c junk") parses leniently.
        raise InvalidAddress(field, value, "is not a valid email address")
    return text


def parse_addresses(value: Any, field: str) -> list[str]:
    """Check a list of addresses; a single string is one address, never split on commas."""
    if value is None:
        return []
    if isinstance(value, (str, Promise)):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, (bytes, Mapping)):
        raise InvalidArgument(field, value, "must be a list of email addresses")
    return [parse_address(item, field) for item in value]


def check_no_line_breaks(field: str, value: Any) -> str:
    """Return the text of a header value or name; refuse any line break or NUL (:data:`HEADER_BREAKS`)."""
    text = _text(field, value)
    problem = header_break(text)
    if problem:
        raise InvalidHeader(field, value, problem)
    return text


def parse_headers(value: Any, field: str = "headers") -> dict[str, str] | None:
    """Check header names and values; line breaks and NUL are refused here, not at delivery."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument(field, value, "must be a dict of header names to values")
    headers: dict[str, str] = {}
    for name, header_value in value.items():
        name = check_no_line_breaks(f"{field} name", name)
        if not name or ":" in name or " " in name:
            raise InvalidHeader(f"{field} name", name, "is not a valid header name")
        if name.lower() == "bcc":
            raise InvalidHeader(f"{field}[{name!r}]", header_value, "is not allowed; pass bcc= instead")
        if isinstance(header_value, (int, float)) and not isinstance(header_value, bool):
            header_value = str(header_value)
        headers[name] = check_no_line_breaks(f"{field}[{name!r}]", header_value)
        if name.lower() in ("reply-to", "from", "to", "cc"):
            for address in getaddresses([headers[name]]):
                if not address[1]:
                    raise InvalidAddress(f"{field}[{name!r}]", header_value, "is not a valid address list")
    return headers


# Member names, not (translatable) labels: "low", "medium", "high", "now".
_PRIORITY_NAMES: dict[str, int] = {member.name: member.value for member in PRIORITY}


def parse_priority(value: Any, field: str = "priority") -> int:
    """Accept ``'low'``/``'medium'``/``'high'``/``'now'``, a PRIORITY member or its number."""
    if isinstance(value, bool):
        raise InvalidPriority(field, value, "is not a priority (use low, medium, high or now)")
    if isinstance(value, int):
        if value in PRIORITY.values:
            return int(value)
    elif isinstance(value, str):
        key = value.strip().lower()
        if key in _PRIORITY_NAMES:
            return _PRIORITY_NAMES[key]
    raise InvalidPriority(field, value, "is not a priority (use low, medium, high or now)")


def parse_datetime(value: Any, field: str) -> datetime.datetime | None:
    """Accept a datetime or a date (midnight); naive values take the current time zone.

    The value must stay within years 1 to 9999 once converted to UTC, as it is
    stored: 9999-12-31 23:00 in a time zone west of UTC is year 10000 there,
    which no database can give back.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        result = value
    elif isinstance(value, datetime.date):
        result = datetime.datetime.combine(value, datetime.time.min)
    else:
        raise InvalidSchedule(field, value, "must be a date or datetime")
    try:
        if timezone.is_naive(result):
            result = timezone.make_aware(result)
        result.astimezone(datetime.timezone.utc)
    except (OverflowError, ValueError):
        raise InvalidSchedule(
            field, value, "is out of range: it must lie within the years 1 to 9999 once converted to UTC"
        ) from None
    return result


def check_schedule(scheduled_time: datetime.datetime | None, expires_at: datetime.datetime | None) -> None:
    if scheduled_time and expires_at and scheduled_time > expires_at:
        raise InvalidSchedule(
            "scheduled_time",
            scheduled_time,
            f"is after expires_at ({expires_at.isoformat()}); the email could never be sent",
        )


def check_json_context(context: Any, field: str = "context") -> dict[str, Any]:
    """Check that a context can be stored as JSON and read back unchanged."""
    if not isinstance(context, Mapping):
        raise InvalidContext(field, context, "must be a dict")
    for path, value in _walk(context, field):
        if not isinstance(value, (str, int, float, bool, type(None), list, dict, tuple)):
            raise InvalidContext(
                path, value, f"is a {type(value).__name__}, which cannot be stored as JSON; pass plain values"
            )
        if isinstance(value, float) and not math.isfinite(value):
            # json.dumps(allow_nan=False) would refuse it without saying where.
            raise InvalidContext(path, value, "is not a finite number, which cannot be stored as JSON")
    try:
        return json.loads(json.dumps(dict(context), allow_nan=False))
    except ValueError as error:
        raise InvalidContext(field, None, f"cannot be stored as JSON: {error}") from None


def _walk(value: Any, path: str) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidContext(
                    f"{path}[{key!r}]", None, "has a key that is not a string; JSON keys must be strings"
                )
            yield from _walk(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


# -- templates ---------------------------------------------------------------

#: Template names starting with this are file templates; all others are database templates.
FILE_PREFIX = "file:"


def is_file_template(name: Any) -> bool:
    """True when ``name`` names a file template (``'file:email/welcome.html'``)."""
    return isinstance(name, str) and name.startswith(FILE_PREFIX)


def template_name_problem(name: str) -> str | None:
    """Why a database template name cannot be used, or None: it must be able to name its file on export.

    ``mail_templates export`` writes ``<name>.html`` and ``<name>.<language>.html``,
    with a ``/`` in the name as a subdirectory.
    """
    if not name:
        return "an empty name cannot be a file name"
    if name.startswith(FILE_PREFIX):
        return f"names starting with {FILE_PREFIX!r} are file templates"
    if "\\" in name or "\x00" in name:
        return "a name with a backslash or a NUL character cannot be a file name"
    segments = name.split("/")
    if any(segment in ("", ".", "..") or segment.startswith(".") for segment in segments):
        return "each '/'-separated part of the name must be non-empty and not start with '.'"
    suffix = segments[-1].rsplit(".", 1)[1] if "." in segments[-1] else ""
    if suffix and (normalize_language(suffix) in language_codes() or suffix.lower() in LANG_INFO):
        return f"the name ends in '.{suffix}', so its file could not be told from a translation's"
    return None


def check_database_template_name(name: Any) -> None:
    """Refuse an EmailTemplate name that could not name its file (ValidationError on ``name``).

    A name starting with ``file:`` marks a file template (code ``reserved_name``).
    """
    if isinstance(name, str) and not is_file_template(name):
        problem = template_name_problem(name)
        if problem:
            raise ValidationError(
                {
                    "name": [
                        ValidationError(
                            "%(name)r: %(problem)s", code="invalid_name", params={"name": name, "problem": problem}
                        )
                    ]
                }
            )
    if is_file_template(name):
        raise ValidationError(
            {
                "name": [
                    ValidationError(
                        "%(name)r starts with %(prefix)r, which marks file templates; "
                        "a database template needs another name.",
                        code="reserved_name",
                        params={"name": name, "prefix": FILE_PREFIX},
                    )
                ]
            }
        )


def syntax_error_line(error: TemplateSyntaxError) -> int | None:
    """The line (in the compiled source) a template syntax error points at, when known."""
    info = getattr(error, "template_debug", None)
    if info and info.get("line"):
        return int(info["line"])
    # Without template debug info, the line of the failing token.
    lineno = getattr(getattr(error, "token", None), "lineno", None)
    return int(lineno) if lineno else None


#: ``{% include './x' %}`` or ``{% extends '../x' %}``: a path relative to the template's own file.
_RELATIVE_PATH = re.compile(r"""{%-?\s*(?:include|extends)\s+["']\.\.?/""")


def compile_source(engine: Engine, source: str) -> Template:
    """Compile a template source; every way it can fail to compile is a TemplateSyntaxError.

    Django fails with an AttributeError on a relative ``{% include %}`` or
    ``{% extends %}`` in a template that has no file (every email template).
    """
    try:
        return engine.from_string(source)
    except TemplateSyntaxError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever Django raises, the caller learns which source is bad
        if _RELATIVE_PATH.search(source):
            reason = "a relative path ('./' or '../') in {% include %} or {% extends %} needs a template file; name the template from a template directory instead"
        else:
            reason = f"does not compile ({type(error).__name__}: {error})"
        raise TemplateSyntaxError(reason) from error


def check_template_syntax(fields: Mapping[str, str | None]) -> None:
    """Compile each database template source; raise one error naming every bad field and its line.

    In restricted mode (``RESTRICTED_TEMPLATES``) they compile with the restricted engine.
    """
    engine = database_template_engine()
    errors: dict[str, str] = {}
    for name, source in fields.items():
        if not source:
            continue
        try:
            compile_source(engine, source)
        except TemplateSyntaxError as error:
            line = syntax_error_line(error)
            errors[name] = f"line {line}: {error}" if line else str(error)
    if errors:
        raise TemplateSyntaxInvalid(errors)
