"""Where attachment files are kept: the storage ``POST_OFFICE['FILE_STORAGE']`` names, looked up at each use."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.files.storage import Storage, storages

from .conf import settings as po_settings

__all__ = ["UPLOAD_DIR", "AttachmentStorage", "random_path"]

#: The directory attachment files are stored under.
UPLOAD_DIR = "post_office_attachments"


def random_path(filename: str) -> str:
    """Where a file called ``filename`` is stored when saved through the model: a random directory, its name kept."""
    token = secrets.token_hex(16)
    return f"{UPLOAD_DIR}/{token[:2]}/{token}/{os.path.basename(filename) or 'attachment'}"


class AttachmentStorage(Storage):
    """The storage named by ``POST_OFFICE['FILE_STORAGE']``, looked up at each use."""

    def _target(self) -> Storage:
        return storages[po_settings.FILE_STORAGE]

    def open(self, name: str, mode: str = "rb") -> Any:
        return self._target().open(name, mode)

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        return self._target().save(name, content, max_length=max_length)

    def delete(self, name: str) -> None:
        self._target().delete(name)

    def exists(self, name: str) -> bool:
        return self._target().exists(name)

    def size(self, name: str) -> int:
        return self._target().size(name)

    def url(self, name: str | None) -> str:
        return self._target().url(name)

    def path(self, name: str) -> str:
        return self._target().path(name)

    def generate_filename(self, filename: str | os.PathLike[str]) -> str:
        # A file saved through the model (not by enqueueing, which names its files itself) gets a
        # random directory, so its name cannot be guessed and never collides.
        return self._target().generate_filename(random_path(os.fspath(filename)))
