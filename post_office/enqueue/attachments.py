"""Attachments: read what callers pass, store each distinct content once, link it to emails."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from ..exceptions import InvalidAttachment
from ..message.fields import AttachmentData
from ..models import Attachment, Email, get_attachment_storage
from ..validation import header_break, parse_headers

STORAGE_DIR = "post_office_attachments"


def read_attachments(value: Any, field: str = "attachments") -> list[AttachmentData]:
    """Accept django-post_office's forms: ``{name: path | file | {'file', 'mimetype', 'headers'}}``.

    A list of ``(name, content, mimetype)`` tuples is accepted too.
    """
    if not value:
        return []
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
        return [_read_one(name, spec, field) for name, spec in items]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        result = []
        for item in value:
            if not isinstance(item, Sequence) or len(item) not in (2, 3):
                raise InvalidAttachment(field, item, "must be (name, content) or (name, content, mimetype)")
            name, content = item[0], item[1]
            spec = {"file": content, "mimetype": item[2] if len(item) == 3 else None}
            result.append(_read_one(name, spec, field))
        return result
    raise InvalidAttachment(field, value, "must be a dict of filename to file, path or content")


def _read_one(name: Any, spec: Any, field: str) -> AttachmentData:
    where = f"{field}[{name!r}]"
    if not isinstance(name, str) or not name.strip():
        raise InvalidAttachment(field, name, "has an attachment name that is not a non-empty string")
    mimetype = None
    headers = None
    if isinstance(spec, Mapping):
        if "file" not in spec:
            raise InvalidAttachment(where, dict(spec), "must have a 'file' key")
        mimetype = spec.get("mimetype")
        headers = spec.get("headers")  # checked with the name and type below
        spec = spec["file"]
    if mimetype is not None and (not isinstance(mimetype, str) or "/" not in mimetype):
        raise InvalidAttachment(f"{where}['mimetype']", mimetype, "is not a MIME type like 'text/plain'")
    data = AttachmentData(
        name=name,
        content=b"",
        mimetype=mimetype or mimetypes.guess_type(name)[0] or "",
        headers=headers,
    )
    check_attachment(data, field)  # before anything is read
    data.content = _read_content(spec, where)
    return data


def check_attachment(data: AttachmentData, field: str = "attachments") -> AttachmentData:
    """Refuse a name, MIME type or part header that would put a line break or NUL in a MIME part header."""
    where = f"{field}[{data.name!r}]"
    problem = header_break(data.name)
    if problem:
        raise InvalidAttachment(field, data.name, f"has a name that {problem}")
    problem = header_break(data.mimetype)
    if problem:
        raise InvalidAttachment(f"{where}['mimetype']", data.mimetype, problem)
    data.headers = parse_headers(data.headers, f"{where}['headers']")
    return data


def _read_content(spec: Any, where: str) -> bytes:
    if isinstance(spec, bytes):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        try:
            with open(spec, "rb") as handle:
                return handle.read()
        except OSError as error:
            raise InvalidAttachment(where, str(spec), f"cannot be read: {error.strerror}") from None
    if hasattr(spec, "read"):
        if hasattr(spec, "seek"):
            try:
                spec.seek(0)
            except (OSError, ValueError):
                pass
        data = spec.read()
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes):
            raise InvalidAttachment(where, spec, "did not read as bytes or text")
        return data
    raise InvalidAttachment(where, spec, "must be a path, a file object, bytes, or a dict with 'file'")


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def store_attachments(per_email: Sequence[tuple[Email, list[AttachmentData]]]) -> None:
    """Store attachments for saved emails in a constant number of queries.

    Content is addressed by its SHA-256: one file per distinct content, and one
    Attachment row per distinct (content, name, type, headers), shared by every
    email that attaches it.
    """
    wanted = [(email, data) for email, items in per_email for data in items]
    if not wanted:
        return
    storage = get_attachment_storage()
    hashes = {content_hash(data.content): data.content for _email, data in wanted}
    rows: dict[tuple[str, str, str, str], Attachment] = {}
    for row in Attachment.objects.filter(content_hash__in=list(hashes)):
        rows.setdefault(_key(row.content_hash, row.name, row.mimetype, row.headers), row)
    paths = {row.content_hash: row.file.name for row in rows.values()}
    new_rows: list[Attachment] = []
    links: list[tuple[Email, tuple[str, str, str, str]]] = []
    for email, data in wanted:
        digest = content_hash(data.content)
        key = _key(digest, data.name, data.mimetype, data.headers)
        if key not in rows:
            if digest not in paths:
                paths[digest] = _save_content(storage, digest, hashes[digest])
            row = Attachment(content_hash=digest, name=data.name, mimetype=data.mimetype, headers=data.headers)
            row.file.name = paths[digest]
            rows[key] = row
            new_rows.append(row)
        links.append((email, key))
    if new_rows:
        Attachment.objects.bulk_create(new_rows)
    through = Attachment.emails.through
    seen: set[tuple[int, int]] = set()
    through_rows = []
    for email, key in links:
        pair = (rows[key].pk, email.pk)
        if pair not in seen:
            seen.add(pair)
            through_rows.append(through(attachment_id=pair[0], email_id=pair[1]))
    through.objects.bulk_create(through_rows)


def _key(digest: str, name: str, mimetype: str, headers: Mapping[str, str] | None) -> tuple[str, str, str, str]:
    return digest, name, mimetype or "", repr(sorted((headers or {}).items()))


def _save_content(storage: Storage, digest: str, content: bytes) -> str:
    path = f"{STORAGE_DIR}/{digest[:2]}/{digest}"
    if storage.exists(path):
        return path
    return str(storage.save(path, ContentFile(content)))
