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
    InvalidEmail,
    InvalidHeader,
    InvalidPriority,
    InvalidSchedule,
    TemplateSyntaxInvalid,
    shown,
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


#: NUL and lone surrogates: no database stores them in text (PostgreSQL refuses NUL, none can encode a
#: lone surrogate as UTF-8), and no mail can carry them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

#: RFC 5321 (4.5.3.1.3): a path is at most 256 octets with its angle brackets, so an address at most 254.
ADDRESS_MAX_LENGTH = 254
#: RFC 5322 (2.1.1): a line of a message is at most 998 characters.
LINE_MAX_LENGTH = 998
#: A header name cannot be folded: with ": " it must fit on one line.
HEADER_NAME_MAX_LENGTH = LINE_MAX_LENGTH - len(": ")
#: A header value is folded over lines at its spaces; mail servers cap a message's header block
#: (Postfix keeps 100 kB of it), so one value gets a sixth of that.
HEADER_VALUE_MAX_LENGTH = 16_384
#: How deep a stored context may nest (MySQL refuses JSON nested more than 100 deep).
CONTEXT_MAX_DEPTH = 32
#: The integers every database keeps exactly in JSON (MySQL: signed or unsigned 64 bits).
_JSON_INT_RANGE = (-(2**63), 2**64 - 1)
#: RFC 5322 (3.6.8): a header name is printable US-ASCII except the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored or sent (a NUL or a lone surrogate, shown), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "NUL (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X}), which is not Unicode text"
    return f"contains {what} at position {found.start()}"


def check_length(error: type[InvalidEmail], field: str, value: str, limit: int, why: str = "") -> str:
    """Return ``value``, or raise ``error`` when it is longer than ``limit`` characters."""
    if len(value) > limit:
        raise error(field, value, f"is {len(value)} characters long; the limit is {limit}{why}")
    return value


def check_text(field: str, value: Any) -> str:
    """A body or other stored text: a string (None is empty) without NUL or lone surrogates."""
    if value is None:
        return ""
    text = _text(field, value)
    problem = text_problem(text)
    if problem:
        raise InvalidArgument(field, value, problem)
    return text


def _text(field: str, value: Any) -> str:
    if isinstance(value, Promise):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidArgument(field, value, f"must be a string, not {type(value).__name__}")
    return value


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"
#: The common shapes, ``a@b.example`` and ``Some Name <a@b.example>`` in plain ASCII, which
#: the full check below accepts as they are (Django's validate_email takes the address, the
#: parser reads it back unchanged): they skip the parsers. tests/test_validation.py checks
#: generated matches against the full check.
_PLAIN_ADDRESS = re.compile(rf"(?:({_PLAIN_ADDR_SPEC})|[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <({_PLAIN_ADDR_SPEC})>)\Z")


def parse_address(value: Any, field: str) -> str:
    """Check one address (``a@b.c`` or ``"Doe, John" <a@b.c>``) and return it stripped.

    Display names may contain commas when quoted, and domains may be
    internationalised; anything that is not exactly one RFC 5322 address is refused.
    """
    if type(value) is str and _plain_address(value):
        return value
    return _parse_address(value, field)


def _plain_address(text: str) -> bool:
    """Whether ``text`` has one of the common shapes the full check accepts unchanged (see _PLAIN_ADDRESS)."""
    plain = _PLAIN_ADDRESS.match(text)
    if plain is None:
        return False
    addr = plain.group(1) or plain.group(2)
    return len(addr) <= ADDRESS_MAX_LENGTH and len(addr.partition("@")[0]) <= 64


def _parse_address(value: Any, field: str) -> str:
    text = _text(field, value)
    problem = header_break(text) or text_problem(text)
    if problem:
        raise InvalidAddress(field, value, problem)
    text = text.strip()
    if not text:
        raise InvalidAddress(field, value, "is empty")
    if len(text) > LINE_MAX_LENGTH:
        raise InvalidAddress(
            field,
            value,
            f"is {len(text)} characters long; an address may have at most {ADDRESS_MAX_LENGTH} (RFC 5321), "
            f"and {LINE_MAX_LENGTH} with its display name (RFC 5322)",
        )
    parsed = getaddresses([text])
    if len(parsed) != 1:
        raise InvalidAddress(field, value, "is not a single email address (quote display names containing commas)")
    name, addr = parsed[0]
    _check_addr_spec(field, value, addr, addr == text)
    if "<" in text and not text.rstrip().endswith(">"):
        raise InvalidAddress(field, value, "is not a valid email address")
    if "<" not in text and text != addr:
        # A bare address with junk around it ("a@b.c junk") parses leniently.
        raise InvalidAddress(field, value, "is not a valid email address")
    return text


def _check_addr_spec(field: str, value: Any, addr: str, alone: bool) -> None:
    """Refuse the bare address ``addr`` found in ``value`` unless it is valid, fits SMTP and has an IDNA domain."""
    if not addr or "@" not in addr:
        raise InvalidAddress(field, value, "is not a valid email address")
    if len(addr) > ADDRESS_MAX_LENGTH:
        where = "is" if alone else "holds an address"
        raise InvalidAddress(
            field,
            value,
            f"{where} {len(addr)} characters long; an address may have at most {ADDRESS_MAX_LENGTH} (RFC 5321)",
        )
    try:
        validate_email(addr)
        # What Django does to the domain when it writes the message.
        addr.rsplit("@", 1)[1].encode("idna")
    except (ValidationError, UnicodeError):
        raise InvalidAddress(field, value, "is not a valid email address") from None


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
    problem = header_break(text) or text_problem(text)
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
        check_length(InvalidHeader, f"{field} name", name, HEADER_NAME_MAX_LENGTH, _LINE_LIMIT)
        if not _HEADER_NAME.match(name):
            raise InvalidHeader(
                f"{field} name", name, "is not a valid header name (printable ASCII, no spaces or colons)"
            )
        where = f"{field}[{name!r}]"
        if name.lower() in ("bcc", "subject"):
            # Bcc would show every hidden recipient; a second Subject is refused by Python's email package
            # (Django 6.1) or written twice (Django 5.2).
            raise InvalidHeader(where, header_value, f"is not allowed; pass {name.lower()}= instead")
        if isinstance(header_value, (int, float)) and not isinstance(header_value, bool):
            header_value = str(header_value)
        headers[name] = _header_value(where, name, header_value)
        if not headers[name] and len(name) > FOLDABLE_NAME_LENGTH:
            # Python's email package cannot write an empty header whose name fills the line (IndexError).
            raise InvalidHeader(
                where,
                header_value,
                f"is empty; an empty header needs a name of at most {FOLDABLE_NAME_LENGTH} characters",
            )
        if name.lower() in ("reply-to", "from", "to", "cc"):
            for address in getaddresses([headers[name]]):
                if not address[1]:
                    raise InvalidAddress(where, header_value, "is not a valid address list")
                _check_addr_spec(where, header_value, address[1], False)
    return headers


#: The longest header name whose header may be empty: with ": " it fits a 78-character line (RFC 5322's advice).
FOLDABLE_NAME_LENGTH = 76

_LINE_LIMIT = f" (with ': ' a header name must fit in one {LINE_MAX_LENGTH}-character line, RFC 5322)"


def _header_value(field: str, name: str, value: Any) -> str:
    """A header value: no line breaks, not too long, and no word too long for one line with its name."""
    text = check_no_line_breaks(field, value)
    check_length(InvalidHeader, field, text, HEADER_VALUE_MAX_LENGTH)
    room = LINE_MAX_LENGTH - len(name) - len(": ")
    longest = max(re.split("[ \t]+", text), key=len)
    if len(longest) > room:
        raise InvalidHeader(
            field,
            value,
            f"holds a word of {len(longest)} characters, which cannot be folded; with its name a line holds "
            f"{room} (RFC 5322: {LINE_MAX_LENGTH} characters a line)",
        )
    return text


def check_log_level(value: Any, field: str = "log_level") -> int | None:
    """None (``POST_OFFICE['LOG_LEVEL']``), or 0, 1 or 2."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2)):
        return value
    raise InvalidArgument(field, value, "is not a log level (0: nothing, 1: failures, 2: every attempt)")


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
    which no database can give back. It is returned in UTC.
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
        # Kept in UTC, as stored: PostgreSQL refuses offsets beyond 15:59, which Python allows up to 23:59.
        result = result.astimezone(datetime.timezone.utc)
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
    """Check that a context can be stored as JSON on every database and read back unchanged."""
    if not isinstance(context, Mapping):
        raise InvalidContext(field, context, "must be a dict")
    for path, value in _walk(context, field):
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise InvalidContext(
                path, value, f"is a {type(value).__name__}, which cannot be stored as JSON; pass plain values"
            )
        if isinstance(value, float) and not math.isfinite(value):
            # json.dumps(allow_nan=False) would refuse it without saying where.
            raise InvalidContext(path, value, "is not a finite number, which cannot be stored as JSON")
        if isinstance(value, int) and not _JSON_INT_RANGE[0] <= value <= _JSON_INT_RANGE[1]:
            raise InvalidContext(path, value, "is too large to be stored as a JSON number (64 bits) on every database")
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise InvalidContext(path, value, problem)
    try:
        return json.loads(json.dumps(dict(context), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidContext(field, None, f"cannot be stored as JSON: {error}") from None


def _walk(context: Mapping[str, Any], field: str) -> Iterable[tuple[str, Any]]:
    """Every leaf of a context with its path, depth first; refuse keys that are not text and deep nesting.

    Iterative, so that no nesting depth raises RecursionError.
    """
    stack: list[tuple[str, Any, int]] = [(field, context, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, (Mapping, list, tuple)) and depth > CONTEXT_MAX_DEPTH:
            raise InvalidContext(
                path, None, f"is nested more than {CONTEXT_MAX_DEPTH} deep, which not every database stores as JSON"
            )
        if isinstance(value, Mapping):
            children = []
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidContext(
                        f"{path}[{shown(key)}]", None, "has a key that is not a string; JSON keys must be strings"
                    )
                problem = text_problem(key)
                if problem:
                    raise InvalidContext(f"{path}[{shown(key)}]", None, f"has a key that {problem}")
                children.append((f"{path}[{shown(key)}]", item, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, (list, tuple)):
            stack.extend(reversed([(f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value)]))
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
