"""Email templates: compile and render, find database templates, file templates, previews.

The wing's rooms: ``engine`` (the engine, compiled sources, rendering the
three parts), ``lookup`` (a template with its translations, cached, and the
language fallback), ``files`` (block-format file templates), ``preview``,
``inline`` (``{% inline_image %}``), ``plaintext`` (text from HTML),
``sync`` (database templates to and from files), ``fileformat`` (their
block format) and ``variables`` (the variables a template reads, as a sample
context).

This package is also a public face (``post_office.rendering.render_preview``,
``compilations``, ``language_chain``...). Its names load on first use, so
importing one room (the models import none, the message wing imports
``engine``) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the room of this wing (or the module of the package) that holds it.
_NAMES = {
    "CompiledTemplates": ".engine",
    "Rendered": ".engine",
    "compilations": ".engine",
    "get_engine": ".engine",
    "render_parts": ".engine",
    "render_template": ".engine",
    "Preview": ".preview",
    "render_preview": ".preview",
    "sample_context": ".variables",
    "TemplateLookup": ".lookup",
    "cache_key": ".lookup",
    "choose_template": ".lookup",
    "find_templates": ".lookup",
    "get_families": ".lookup",
    "select_template": ".lookup",
    "language_chain": "post_office.languages",
    "normalize_language": "post_office.languages",
    "FILE_PREFIX": "post_office.validation",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'post_office.rendering' has no attribute {name!r}")
    source = importlib.import_module(module, __name__)
    return getattr(source, name)
