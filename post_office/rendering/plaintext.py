"""A readable plain-text version of an HTML email body.

Used when a template has HTML but no plain text (``AUTO_PLAIN_TEXT``): mail
clients that show plain text, and spam filters that compare both parts, get
the same words. Links keep their address (``text (url)``), paragraphs and line
breaks survive, list items get a marker, scripts, styles and the ``<head>`` are
dropped, and entities are decoded.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

# Elements whose content is never shown.
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Elements that start and end a paragraph (a blank line around them).
_PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "address", "figure"}
)
# Elements that start and end a line.
_LINES = frozenset(
    {
        "div",
        "tr",
        "li",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "main",
        "aside",
        "form",
        "fieldset",
        "figcaption",
        "caption",
        "center",
        "tbody",
        "thead",
        "tfoot",
    }
)
_CELLS = frozenset({"td", "th"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"})
_WHITESPACE = re.compile(r"[ \t\r\n\f\xa0]+")


class _TextWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.breaks = 0  # newlines owed before the next text
        self.line_start = True
        self.space = False  # a space is owed before the next text on this line
        self.hidden = 0
        self.pre = 0
        self.lists: list[list[int]] = []  # [is_ordered, counter] per open list
        self.links: list[tuple[str, int]] = []  # (href, index of the first part of the link text)

    # -- output ---------------------------------------------------------------

    def need_break(self, count: int) -> None:
        if self.parts:
            self.breaks = max(self.breaks, count)
        self.space = False

    def write(self, text: str, *, verbatim: bool = False) -> None:
        if not text:
            return
        if self.breaks:
            self.parts.append("\n" * self.breaks)
            self.breaks = 0
            self.line_start = True
            self.space = False
        if not verbatim:
            if self.line_start:
                text = text.lstrip(" ")
                if not text:
                    return
            elif self.space and not text.startswith(" ") and not self.parts[-1].endswith((" ", "\n")):
                text = " " + text
        self.space = False
        self.parts.append(text)
        self.line_start = text.endswith("\n")

    # -- parser hooks ---------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            if tag not in _VOID:
                self.hidden += 1
            return
        if self.hidden:
            return
        attributes = {name: value or "" for name, value in attrs}
        if tag in _PARAGRAPHS:
            self.need_break(2)
        elif tag in _LINES:
            self.need_break(1)
        if tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([tag == "ol", 0])
        elif tag == "li":
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                marker = f"{self.lists[-1][1]}. "
            else:
                marker = "- "
            self.write(indent + marker, verbatim=True)
        elif tag == "br":
            self.write("\n", verbatim=True)
        elif tag == "hr":
            self.need_break(2)
            self.write("-" * 20, verbatim=True)
            self.need_break(2)
        elif tag == "img":
            alt = _WHITESPACE.sub(" ", attributes.get("alt", "")).strip()
            if alt:
                self.write(alt)
        elif tag == "a":
            self.links.append((attributes.get("href", "").strip(), len(self.parts)))
        elif tag in _CELLS:
            self.space = not self.line_start

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
            return
        if self.hidden:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            self._close_link(href, "".join(self.parts[start:]))
        elif tag in _CELLS:
            self.space = True
        if tag in _PARAGRAPHS:
            self.need_break(2)
        elif tag in _LINES:
            self.need_break(1)

    def _close_link(self, href: str, text: str) -> None:
        if not href or href.startswith(("#", "javascript:", "cid:")):
            return
        shown = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
        text = text.strip()
        if not text:
            self.write(shown)
        elif shown not in text:
            self.write(f" ({shown})")

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.pre:
            self.write(data.replace("\r\n", "\n"), verbatim=True)
            return
        collapsed = _WHITESPACE.sub(" ", data)
        if collapsed == " ":
            self.space = not self.line_start
            return
        if collapsed.startswith(" "):
            self.space = not self.line_start
            collapsed = collapsed[1:]
        trailing = collapsed.endswith(" ")
        self.write(collapsed.rstrip(" "))
        self.space = trailing


def html_to_text(html: str) -> str:
    """Return a readable plain-text rendering of an HTML document or fragment."""
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    text = "".join(writer.parts)
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
