"""django-post_office's ``post_office.cache`` functions, on the cache template lookups use.

Template lookups are cached and invalidated by this app on every edit
(docs/templates.rst); nothing needs these functions. They are kept for projects
that call them: ``delete(name)`` drops the cached lookups of the template
``name`` (as it meant to), and ``get``/``set`` keep a value under a key of
their own. With no template cache (``TEMPLATE_CACHE = False``, or only a
per-process default cache) ``get`` gives None and the others do nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .conf import settings as po_settings
from .conf import template_cache
from .models import template_cache_key

__all__ = ["delete", "get", "get_cache_key", "set"]


def get_cache_key(name: str) -> str:
    """The key ``set`` and ``get`` use for ``name``: no two names share one."""
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()
    return f"post_office:value:{digest}"


def set(name: str, content: Any) -> None:  # noqa: A001 - django-post_office's name
    """Keep ``content`` under ``name`` for the template cache's timeout."""
    cache = template_cache()
    if cache is not None:
        cache.set(get_cache_key(name), content, timeout=po_settings.TEMPLATE_CACHE_TIMEOUT)


def get(name: str) -> Any:
    """What ``set(name, ...)`` kept, or None."""
    cache = template_cache()
    return None if cache is None else cache.get(get_cache_key(name))


def delete(name: str) -> None:
    """Forget ``name``'s value and the cached lookups of the template called ``name`` (all its translations)."""
    cache = template_cache()
    if cache is not None:
        cache.delete_many([get_cache_key(name), template_cache_key(name)])


def __getattr__(attribute: str) -> Any:
    # django-post_office's module attribute, read when asked for (the setting may change).
    if attribute == "cache_backend":
        return template_cache()
    raise AttributeError(f"module 'post_office.cache' has no attribute {attribute!r}")
