"""Address lists written as one text: split into whole addresses, and joined back.

django-post_office stored recipients as comma-separated text and split it on
every comma, which cut ``"Doe, John" <john@example.com>`` in two. Here a comma
separates addresses only outside a quoted display name, ``<...>`` and ``(...)``;
a piece without an ``@`` (an unquoted name such as ``Doe, John <john@example.com>``)
belongs to the piece after it, and its name is quoted. Nothing here validates:
the callers check the addresses they get.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable


def split_address_list(text: str) -> list[str]:
    """The addresses of ``"a@example.com, Ann <ann@example.com>"``, whole, in order; none for blank text."""
    addresses: list[str] = []
    carried = ""
    for piece in _pieces(text):
        piece = f"{carried}, {piece}" if carried else piece
        if "@" in piece:
            addresses.append(quote_display_name(piece))
            carried = ""
        else:
            carried = piece
    if carried:
        addresses.append(carried)
    return addresses


def _pieces(text: str) -> Iterable[str]:
    """``text`` cut at the commas outside quotes, angle brackets and parentheses, stripped, empty pieces left out."""
    start = depth = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = char == "\\"
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char in "<(":
            depth += 1
        elif char in ">)":
            depth = max(depth - 1, 0)
        elif char == "," and not depth:
            yield from _kept(text[start:index])
            start = index + 1
    yield from _kept(text[start:])


def _kept(piece: str) -> Iterable[str]:
    piece = piece.strip()
    if piece:
        yield piece


def quote_display_name(address: str) -> str:
    """``Doe, John <j@example.com>`` as ``"Doe, John" <j@example.com>``; any other address unchanged."""
    name, bracket, rest = address.rpartition("<")
    name = name.strip()
    if not bracket or "," not in name or (name.startswith('"') and name.endswith('"') and len(name) > 1):
        return address
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{rest}'


def join_address_list(addresses: Iterable[str]) -> str:
    """The addresses as one text that :func:`split_address_list` gives back whole."""
    return ", ".join(quote_display_name(address.strip()) for address in addresses)


def address_list(value: object) -> object:
    """A recipients value given as text, as a list of addresses; any other value unchanged.

    Text is a comma-separated list, or the ``"['a@example.com', ...]"`` that
    django-post_office's ``dumpdata`` wrote for its recipient columns.
    """
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            parsed = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return [item.strip() for item in parsed if item.strip()]
    return split_address_list(value)
