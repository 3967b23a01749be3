"""The block-format file of one database template (``manage.py mail_templates``).

One file per template and language::

    <directory>/<name>.html          the base template
    <directory>/<name>.<lang>.html   its translation (a code from settings.LANGUAGES)

A ``/`` in a name is a subdirectory. Each file is in django-templated-mail's
block format, so an exported directory also works as file templates
(``template='file:welcome.html'`` with a ``DIRS`` entry pointing at it)::

    {% comment "description" %}Sent after sign-up{% endcomment %}
    {% block subject %}Welcome, {{ name }}{% endblock subject %}

    {% block text_body %}
    Hello {{ name }}
    {% endblock text_body %}

    {% block html_body %}
    <p>Hello {{ name }}</p>
    {% endblock html_body %}

A block holds a field's template source exactly as stored. One line break
right after the opening tag and one right before the closing tag are layout,
not content (export puts them around values of more than one line). The
``subject`` block and at least one of ``text_body`` and ``html_body`` are
required; a missing body block or description is an empty field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf.locale import LANG_INFO
from django.template.base import DebugLexer, TokenType

from ..languages import language_codes, normalize_language
from ..validation import template_name_problem

EXTENSION = ".html"
#: Block name -> EmailTemplate field.
BLOCK_FIELDS = {"subject": "subject", "text_body": "content", "html_body": "html_content"}
#: The fields a file holds, in the order they are compared and reported.
FIELDS = ("description", "subject", "content", "html_content")
_DESCRIPTION_TAG = 'comment "description"'  # how export writes it; import also takes single quotes


class FormatError(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


# -- the file format ---------------------------------------------------------


def _wrap(value: str) -> str:
    return f"\n{value}\n" if ("\n" in value or "\r" in value) else value


def _unwrap(raw: str) -> str:
    raw = raw[_leading_break(raw) :]
    for newline in ("\r\n", "\n"):
        if raw.endswith(newline):
            raw = raw[: -len(newline)]
            break
    return raw


def _leading_break(raw: str) -> int:
    """Length of the layout line break at the start of a block's text (0, 1 or 2)."""
    return 2 if raw.startswith("\r\n") else 1 if raw.startswith("\n") else 0


def format_template_file(values: dict[str, str]) -> str:
    """The block-format text for a template's ``description``, ``subject``, ``content`` and ``html_content``."""
    parts = []
    if values.get("description"):
        parts.append(f"{{% {_DESCRIPTION_TAG} %}}{_wrap(values['description'])}{{% endcomment %}}")
    for block, model_field in BLOCK_FIELDS.items():
        parts.append(f"{{% block {block} %}}{_wrap(values.get(model_field) or '')}{{% endblock {block} %}}")
    return "\n\n".join(parts) + "\n"


def parse_template_file(text: str) -> dict[str, str]:
    """Read the raw field values of a block-format file (nothing is rendered or compiled).

    Raises ``FormatError`` with the line of the first problem.
    """
    return {name: value for name, (value, _line) in parse_blocks(text).items()}


def parse_blocks(text: str) -> dict[str, tuple[str, int]]:
    """Field -> (value, line in the file where the value starts)."""
    tokens = DebugLexer(text).tokenize()
    found: dict[str, tuple[str, int]] = {}

    def take(model_field: str, opening: Any, closing: Any) -> None:
        raw = text[opening.position[1] : closing.position[0]]
        line = text.count("\n", 0, opening.position[1]) + 1 + (1 if _leading_break(raw) else 0)
        found[model_field] = (_unwrap(raw), line)

    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.token_type == TokenType.TEXT:
            if token.contents.strip():
                raise FormatError(token.lineno or 1, f"text outside the blocks: {token.contents.strip()[:40]!r}")
        elif token.token_type == TokenType.VAR:
            raise FormatError(token.lineno or 1, f"{{{{ {token.contents} }}}} outside the blocks")
        elif token.token_type == TokenType.BLOCK:
            bits = token.contents.split()
            if bits[:1] == ["block"]:
                if len(bits) != 2 or bits[1] not in BLOCK_FIELDS:
                    raise FormatError(
                        token.lineno or 1,
                        f"{{% {token.contents} %}} is not one of the blocks {', '.join(BLOCK_FIELDS)}",
                    )
                if BLOCK_FIELDS[bits[1]] in found:
                    raise FormatError(token.lineno or 1, f"{{% block {bits[1]} %}} appears twice")
                end = _find_endblock(tokens, index, bits[1])
                take(BLOCK_FIELDS[bits[1]], token, tokens[end])
                index = end
            elif bits[:1] == ["comment"]:
                end = _find_end(tokens, index, "endcomment")
                if bits[1:] in (['"description"'], ["'description'"]):
                    if "description" in found:
                        raise FormatError(token.lineno or 1, "the description comment appears twice")
                    take("description", token, tokens[end])
                index = end
            else:
                raise FormatError(
                    token.lineno or 1,
                    f"{{% {token.contents} %}} outside the blocks: each block is a standalone template "
                    "(put {% load %} inside the blocks that need it)",
                )
        index += 1
    if "subject" not in found:
        raise FormatError(1, "there is no {% block subject %}")
    if "content" not in found and "html_content" not in found:
        raise FormatError(1, "there is neither a {% block text_body %} nor a {% block html_body %}")
    return {name: found.get(name, ("", 1)) for name in FIELDS}


def _find_end(tokens: Sequence[Any], start: int, end_tag: str) -> int:
    for index in range(start + 1, len(tokens)):
        if tokens[index].token_type == TokenType.BLOCK and tokens[index].contents == end_tag:
            return index
    raise FormatError(tokens[start].lineno, f"{{% {tokens[start].contents} %}} has no {{% {end_tag} %}}")


def _find_endblock(tokens: Sequence[Any], start: int, name: str) -> int:
    """The index of the ``{% endblock %}`` closing ``tokens[start]``, skipping nested blocks and comments."""
    depth = 0
    index = start + 1
    while index < len(tokens):
        token = tokens[index]
        if token.token_type == TokenType.BLOCK:
            tag = token.contents.split()[0] if token.contents else ""
            if tag == "comment":
                # The template parser skips everything up to endcomment.
                index = _find_end(tokens, index, "endcomment")
            elif tag == "block":
                depth += 1
            elif tag == "endblock":
                if depth == 0:
                    closing = token.contents.split()[1:]
                    if closing and closing != [name]:
                        raise FormatError(
                            token.lineno or 1, f"{{% {token.contents} %}} closes {{% block {name} %}}; the names differ"
                        )
                    return index
                depth -= 1
        index += 1
    raise FormatError(tokens[start].lineno, f"{{% block {name} %}} has no {{% endblock %}}")


# -- names and paths ---------------------------------------------------------


def file_path_for(name: str, language: str) -> str:
    """The relative path of a template's file, or raise ValueError saying why the name cannot be a file."""
    problem = template_name_problem(name)
    if problem:
        raise ValueError(problem)
    return f"{name}.{language}{EXTENSION}" if language else f"{name}{EXTENSION}"


def identify(path: str) -> tuple[str, str]:
    """``'a/welcome.de.html'`` -> ``('a/welcome', 'de')``; raise FormatError for a bad language."""
    stem = path[: -len(EXTENSION)]
    folder, _slash, base = stem.rpartition("/")
    if "." in base:
        head, tail = base.rsplit(".", 1)
        if normalize_language(tail) in language_codes():
            if not head:
                raise FormatError(1, "the file name has a language but no template name")
            return (f"{folder}/{head}" if folder else head), normalize_language(tail)
        if tail.lower() in LANG_INFO:
            raise FormatError(1, f"language {tail!r} is not in settings.LANGUAGES")
    return stem, ""
