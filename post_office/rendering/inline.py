"""Inline images: ``{% inline_image %}`` sources, their Content-IDs and their collection.

While an HTML body is rendered, :func:`collecting` makes a collector current;
the template tag loads each image (a static file, a path in the default
storage, or a file object from the context), adds it to the collector and
writes ``cid:<id>`` into the HTML. The caller then attaches the collected images
as related parts (``multipart/related``) of the HTML alternative.

The Content-ID is derived from the image's content, so the same image is one
part however often it is used, and identical images in many emails share one
stored attachment. Content-IDs ending in :data:`CID_DOMAIN` mark the parts that
belong next to the HTML when a stored email is built.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import mimetypes
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.utils._os import safe_join

from ..exceptions import InvalidInlineImage

logger = logging.getLogger("post_office")

#: Domain part of the Content-IDs of inline images made by ``{% inline_image %}``.
CID_DOMAIN = "inline.post-office"

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


@dataclass(frozen=True)
class InlineImage:
    """One image referenced from an HTML body as ``cid:<cid>``."""

    cid: str
    filename: str
    mimetype: str
    content: bytes = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The part headers that make it an inline, referable image."""
        return {"Content-ID": f"<{self.cid}>", "Content-Disposition": f'inline; filename="{self.filename}"'}

    @property
    def data_uri(self) -> str:
        """The image as a ``data:`` URI (for previews in a browser)."""
        import base64

        return f"data:{self.mimetype};base64,{base64.b64encode(self.content).decode()}"


def is_inline_cid(headers: dict[str, str] | None) -> bool:
    """True when part headers carry a Content-ID made by ``{% inline_image %}``."""
    for name, value in (headers or {}).items():
        if name.lower() == "content-id":
            return str(value).strip().strip("<>").endswith("@" + CID_DOMAIN)
    return False


class Collector:
    """The images of one HTML body, in order of first use, without duplicates.

    ``absolute_paths``: the template is a developer's file (rendered through the
    ``post_office`` template engine by the project's code), so an absolute path
    to an image is read too, as django-post_office read it. Never for templates
    edited in the admin, which must not reach the server's other files.
    """

    def __init__(self, loaded: dict[str, InlineImage] | None = None, *, absolute_paths: bool = False) -> None:
        self.images: dict[str, InlineImage] = {}
        self.absolute_paths = absolute_paths
        # Paths already read during this call (shared by every email of a send_many).
        self._loaded = loaded if loaded is not None else {}

    def add(self, source: Any) -> str:
        if isinstance(source, str) and source in self._loaded:
            image = self._loaded[source]
        else:
            image = load(source, absolute_paths=self.absolute_paths)
            if isinstance(source, str):
                self._loaded[source] = image
        self.images.setdefault(image.cid, image)
        return f"cid:{image.cid}"


_current: contextvars.ContextVar[Collector | None] = contextvars.ContextVar("post_office_inline_images", default=None)


@contextlib.contextmanager
def collecting(loaded: dict[str, InlineImage] | None = None, *, absolute_paths: bool = False) -> Iterator[Collector]:
    """Make a collector current while an HTML body is rendered."""
    collector = Collector(loaded, absolute_paths=absolute_paths)
    token = _current.set(collector)
    try:
        yield collector
    finally:
        _current.reset(token)


def embed(source: Any) -> str:
    """The template tag's work: ``cid:<id>`` for the image, or '' when it cannot be used.

    Outside an HTML email body (a subject, a plain-text body, a web page) there is
    nothing to attach the image to, so the tag renders nothing. A missing image is
    an error when ``settings.DEBUG`` is true, and a logged warning otherwise.
    """
    collector = _current.get()
    if collector is None:
        return ""
    try:
        return collector.add(source)
    except InvalidInlineImage as error:
        if settings.DEBUG:
            raise
        logger.warning("Inline image skipped: %s", error)
        return ""


def load(source: Any, *, absolute_paths: bool = False) -> InlineImage:
    """Read an image from a static path, a default-storage path or a file object (or an absolute path, if allowed)."""
    if isinstance(source, str) and absolute_paths and os.path.isabs(source) and os.path.isfile(source):
        with open(source, "rb") as handle:
            filename, content = os.path.basename(source), handle.read()
    elif isinstance(source, str):
        filename, content = _read_path(source)
    elif hasattr(source, "read"):
        filename, content = _read_file(source)
    else:
        raise InvalidInlineImage("inline_image", source, "must be a static file path, a storage path or a file object")
    mimetype = _image_type(filename, content)
    if mimetype is None:
        raise InvalidInlineImage("inline_image", source, "is not a recognised image (PNG, JPEG, GIF, WebP, SVG, ...)")
    digest = hashlib.sha256(content).hexdigest()
    return InlineImage(
        cid=f"{digest[:32]}@{CID_DOMAIN}", filename=_safe_filename(filename), mimetype=mimetype, content=content
    )


def _safe_filename(name: str) -> str:
    # The name goes into a quoted header parameter: keep it plain ASCII.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _read_path(path: str) -> tuple[str, bytes]:
    if not path.strip():
        raise InvalidInlineImage("inline_image", path, "is an empty path")
    filename = os.path.basename(path.replace("\\", "/")) or "image"
    found = _find_static(path)
    if found is not None:
        with open(found, "rb") as handle:
            return filename, handle.read()
    try:
        if default_storage.exists(path):
            with default_storage.open(path, "rb") as handle:
                return filename, handle.read()
    except (SuspiciousFileOperation, ValueError):
        pass
    raise InvalidInlineImage("inline_image", path, "was not found in the static files or the default storage")


def _find_static(path: str) -> str | None:
    """A static file's location, through the staticfiles finders or STATIC_ROOT.

    Absolute paths and paths leaving the static directories are never read:
    templates are edited in the admin, and must not reach other files.
    """
    if os.path.isabs(path):
        return None
    if apps.is_installed("django.contrib.staticfiles"):
        from django.contrib.staticfiles import finders

        try:
            found = finders.find(path)
        except SuspiciousFileOperation:
            return None
        if isinstance(found, list):
            found = found[0] if found else None
        if found:
            return str(found)
    root = getattr(settings, "STATIC_ROOT", None)
    if root:
        try:
            candidate = safe_join(str(root), path)
        except SuspiciousFileOperation:
            return None
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_file(handle: Any) -> tuple[str, bytes]:
    name = getattr(handle, "name", None) or "image"
    if hasattr(handle, "seek"):
        with contextlib.suppress(OSError, ValueError):
            handle.seek(0)
    try:
        content = handle.read()
    except (OSError, ValueError) as error:
        raise InvalidInlineImage("inline_image", name, f"cannot be read: {error}") from None
    if isinstance(content, str):
        content = content.encode()
    return os.path.basename(str(name)) or "image", bytes(content)


def _image_type(filename: str, content: bytes) -> str | None:
    guessed = mimetypes.guess_type(filename)[0]
    if guessed and guessed.startswith("image/"):
        return guessed
    for signature, mimetype in _SIGNATURES:
        if content.startswith(signature):
            return mimetype
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    head = content[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    return None
