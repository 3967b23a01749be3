"""Restricted mode for database templates (``POST_OFFICE['RESTRICTED_TEMPLATES']``).

A database template is code, written by whoever may edit templates in the
admin. With Django's engine it can ``{% load %}`` any tag library of the
project, ``{% include %}`` or ``{% extends %}`` any template file the loaders
find, print the context and every loaded module with ``{% debug %}``, and read
(and call) whatever the objects in its context lead to, such as
``{{ user.password }}``. docs/security.md lists it all.

In restricted mode database templates compile with a :class:`RestrictedEngine`
instead, the project's engine with less in it:

* ``{% load %}`` finds only the libraries ``RESTRICTED_TEMPLATE_LIBRARIES``
  lists (a listed library the project's engine builds in stays built in);
* of Django's built-in tags, :data:`ALLOWED_TAGS` are there; ``{% debug %}``,
  ``{% include %}`` and ``{% extends %}`` fail to compile, naming the tag, and
  the engine has no template loader, so no template file is reachable;
* the context is checked and copied by :func:`template_data`: strings,
  numbers, booleans, None, dates and times, Decimal, and lists, tuples and
  dicts of them; any other object is refused, naming its context key.

Saving a template (``validation.check_template_syntax``), importing template
files (``rendering.sync``) and rendering one (``rendering.engine``) all compile
with :func:`database_template_engine`, so a template stored before the mode was
turned on cannot escape it at enqueue, at delivery or in a preview. File
templates (``file:``) and the subject and bodies a caller passes with a context
are the project's own code and keep the full engine.
"""

from __future__ import annotations

import datetime
import threading
import weakref
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.template import Engine, Library, TemplateSyntaxError, defaulttags, loader_tags
from django.template.base import Node, Parser, Token
from django.utils.functional import Promise
from django.utils.safestring import SafeString

from .conf import settings as po_settings
from .conf import template_engine
from .exceptions import InvalidContext

__all__ = [
    "ALLOWED_TAGS",
    "REFUSED_TAGS",
    "RestrictedEngine",
    "database_template_engine",
    "restricted_engine",
    "template_data",
]

MODE = "POST_OFFICE['RESTRICTED_TEMPLATES']"
LIBRARIES = "POST_OFFICE['RESTRICTED_TEMPLATE_LIBRARIES']"

#: Django's built-in tags a restricted template may use ({% load %} is there too, checked).
#: A tag Django adds in a later version stays out until it is listed here.
ALLOWED_TAGS = frozenset(
    {
        "autoescape",
        "block",
        "comment",
        "csrf_token",
        "cycle",
        "filter",
        "firstof",
        "for",
        "if",
        "ifchanged",
        "lorem",
        "now",
        "partial",
        "partialdef",
        "querystring",
        "regroup",
        "resetcycle",
        "spaceless",
        "templatetag",
        "url",
        "verbatim",
        "widthratio",
        "with",
    }
)

#: Django's built-in tags a restricted template may not use, and what they would reach.
REFUSED_TAGS = {
    "debug": "prints the whole context and every loaded Python module",
    "include": "renders template files, which database templates cannot reach",
    "extends": "renders template files, which database templates cannot reach",
}


def _load(parser: Parser, token: Token) -> Node:
    """``{% load %}`` of a library RESTRICTED_TEMPLATE_LIBRARIES lists (the engine has no others)."""
    bits = token.contents.split()
    names = bits[-1:] if len(bits) >= 4 and bits[-2] == "from" else bits[1:]
    for name in names:
        if name not in parser.libraries:
            allowed = ", ".join(repr(library) for library in sorted(parser.libraries)) or "none"
            raise TemplateSyntaxError(
                f"{{% {token.contents} %}}: the tag library {name!r} may not be loaded by database templates "
                f"in restricted mode ({MODE}); {LIBRARIES} lists those that may: {allowed}"
            )
    return defaulttags.load(parser, token)


def _refuse(reason: str, parser: Parser, token: Token) -> Node:
    name = token.split_contents()[0]
    raise TemplateSyntaxError(
        f"{{% {name} %}} is not allowed in database templates in restricted mode ({MODE}): it {reason}"
    )


def _library() -> Library:
    library = Library()
    for source in (defaulttags.register, loader_tags.register):
        for name, compile_function in source.tags.items():
            if name in ALLOWED_TAGS:
                library.tags[name] = compile_function
    library.tag("load", _load)
    for name, reason in REFUSED_TAGS.items():
        library.tag(name, partial(_refuse, reason))
    return library


#: The built-in tags of restricted templates (the RestrictedEngine loads this module as a builtin).
register = _library()


class RestrictedEngine(Engine):
    """The engine database templates compile with in restricted mode (see :func:`restricted_engine`)."""

    # Django's filters, and this module's tags instead of Django's defaulttags and loader_tags.
    default_builtins = ["django.template.defaultfilters", __name__]


_engines: weakref.WeakKeyDictionary[Engine, dict[tuple[str, ...], RestrictedEngine]] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def restricted_engine(base: Engine, libraries: Sequence[str] = ()) -> RestrictedEngine:
    """``base`` as restricted mode has it, where ``{% load %}`` finds only ``libraries`` (built once).

    Raise ImproperlyConfigured when ``base`` has no library of one of these names.
    """
    key = tuple(libraries)
    with _engines_lock:
        per_base = _engines.setdefault(base, {})
        engine = per_base.get(key)
        if engine is None:
            engine = per_base[key] = _build(base, key)
    return engine


def _build(base: Engine, libraries: tuple[str, ...]) -> RestrictedEngine:
    unknown = [name for name in libraries if name not in base.template_libraries]
    if unknown:
        known = ", ".join(repr(name) for name in sorted(base.template_libraries)) or "none"
        raise ImproperlyConfigured(
            f"{LIBRARIES} names {', '.join(repr(name) for name in unknown)}, which the template engine "
            f"has no tag library of: it has {known}."
        )
    paths = {name: base.libraries[name] for name in libraries}
    # Libraries the project's engine builds in (PostOfficeTemplates: post_office) stay built in when listed.
    extra_builtins = [path for path in base.builtins[len(Engine.default_builtins) :] if path in paths.values()]
    return RestrictedEngine(
        dirs=[],
        app_dirs=False,
        context_processors=[],
        debug=base.debug,
        loaders=[],
        string_if_invalid=base.string_if_invalid,
        file_charset=base.file_charset,
        libraries=paths,
        builtins=extra_builtins,
        autoescape=base.autoescape,
    )


def database_template_engine() -> Engine:
    """The engine database templates compile with: ``template_engine()``, restricted in restricted mode."""
    base = template_engine()
    if not po_settings.RESTRICTED_TEMPLATES:
        return base
    return restricted_engine(base, po_settings.RESTRICTED_TEMPLATE_LIBRARIES)


# -- the context as data -------------------------------------------------------

#: Values a restricted template sees as they are; subclasses are reduced to these types.
_PLAIN = frozenset(
    {
        str,
        SafeString,
        bool,
        int,
        float,
        Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        type(None),
    }
)
_DATA_TYPES = (str, int, float, Decimal, datetime.date, datetime.time, datetime.timedelta)
_DATA = "strings, numbers, booleans, None, dates and times, Decimal, and lists and dicts of them"


def template_data(context: Mapping[str, Any], field: str = "context") -> dict[str, Any]:
    """A copy of ``context`` holding data only; raise InvalidContext naming the first value that is not data.

    Data is what :data:`_PLAIN` lists, lazy translations (as text), and lists,
    tuples and dicts of data. Each render gets its own copy, so a template
    cannot change the caller's lists and dicts (``{{ items.pop }}``).
    """
    return _mapping(context, field)


def _mapping(value: Mapping[Any, Any], path: str) -> dict[str, Any]:
    copy = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidContext(f"{path}[{key!r}]", None, "has a key that is not a string")
        copy[key] = _data(item, f"{path}[{key!r}]")
    return copy


def _data(value: Any, path: str) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, (list, tuple)):
        items = [_data(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        return _mapping(value, path)
    if isinstance(value, Promise):
        return str(value)
    if isinstance(value, _DATA_TYPES):
        return _plain(value)
    raise InvalidContext(
        path,
        None,
        f"is a {kind.__module__}.{kind.__qualname__}, which database templates may not see in restricted mode "
        f"({MODE}); pass data: {_DATA}",
    )


def _plain(value: Any) -> Any:
    """A subclass of a data type (an enum member, a fake datetime) as the data type itself."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Decimal):
        return Decimal(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            value.tzinfo,
            fold=value.fold,
        )
    if isinstance(value, datetime.date):
        return datetime.date(value.year, value.month, value.day)
    if isinstance(value, datetime.time):
        return datetime.time(value.hour, value.minute, value.second, value.microsecond, value.tzinfo, fold=value.fold)
    return datetime.timedelta(value.days, value.seconds, value.microseconds)
