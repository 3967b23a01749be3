"""Attachments: read what callers pass, store each distinct content once, link it to emails.

Three rules keep them safe. A path is read only inside ``ATTACHMENT_DIRS``
(links and ``..`` resolved first); sizes are checked against
``MAX_ATTACHMENT_SIZE`` before a file is read, and the whole email against
``MAX_MESSAGE_SIZE``; stored files get random names, so knowing a file's
content is not enough to fetch it (``content_hash`` stays in the database,
where de-duplication finds it).
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import secrets
import stat
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils import timezone

from ..conf import settings as po_settings
from ..exceptions import AttachmentTooLarge, InvalidAttachment, MessageTooLarge
from ..message.fields import AttachmentData
from ..models import Attachment, Email, get_attachment_storage
from ..validation import header_break, parse_headers

STORAGE_DIR = "post_office_attachments"
#: How much of a stream of unknown size is read at a time.
_CHUNK = 1024 * 1024
#: Opened without following a link in the last component, and without waiting for a FIFO's writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_attachments(value: Any, field: str = "attachments") -> list[AttachmentData]:
    """Accept django-post_office's forms: ``{name: path | file | bytes | {'file', 'mimetype', 'headers'}}``.

    A list of ``(name, content)`` or ``(name, content, mimetype)`` tuples is
    accepted too; there, as in Django's ``EmailMessage.attach()``, a string is
    text content (encoded as UTF-8), never a path.
    """
    if not value:
        return []
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
        return [_read_one(name, spec, field) for name, spec in items]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        result = []
        for item in value:
            if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) not in (2, 3):
                raise InvalidAttachment(field, item, "must be (name, content) or (name, content, mimetype)")
            spec = {"file": item[1], "mimetype": item[2] if len(item) == 3 else None}
            result.append(_read_one(item[0], spec, field, content_only=True))
        return result
    raise InvalidAttachment(field, value, "must be a dict of filename to file, path or content")


def _read_one(name: Any, spec: Any, field: str, content_only: bool = False) -> AttachmentData:
    if not isinstance(name, str) or not name.strip():
        raise InvalidAttachment(field, name, "has an attachment name that is not a non-empty string")
    where = f"{field}[{name!r}]"
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
    if content_only:
        data.content = _content(spec, where)
    else:
        data.content = _read_content(spec, where)
    return data


def check_attachment(data: AttachmentData, field: str = "attachments") -> AttachmentData:
    """Refuse a name, MIME type or part header that would put a line break or NUL in a MIME part header.

    Also refuse content over ``MAX_ATTACHMENT_SIZE`` (an attachment read from a
    Django message arrives here with its content).
    """
    where = f"{field}[{data.name!r}]"
    problem = header_break(data.name)
    if problem:
        raise InvalidAttachment(field, data.name, f"has a name that {problem}")
    problem = header_break(data.mimetype)
    if problem:
        raise InvalidAttachment(f"{where}['mimetype']", data.mimetype, problem)
    data.headers = parse_headers(data.headers, f"{where}['headers']")
    _check_size(len(data.content), where)
    return data


def _check_size(size: int, where: str, *, at_least: bool = False) -> None:
    limit = po_settings.MAX_ATTACHMENT_SIZE
    if limit is not None and size > limit:
        more = "at least " if at_least else ""
        raise AttachmentTooLarge(
            where,
            None,
            f"is {more}{size} bytes, more than POST_OFFICE['MAX_ATTACHMENT_SIZE'] allows ({limit} bytes)",
        )


def _content(spec: Any, where: str) -> bytes:
    """The content of a ``(name, content, mimetype)`` tuple: text (as UTF-8), bytes or a file object."""
    if isinstance(spec, str):
        content = spec.encode()
        _check_size(len(content), where)
        return content
    if isinstance(spec, os.PathLike):
        raise InvalidAttachment(
            where, os.fspath(spec), "is a path; a (name, content, mimetype) tuple holds content: pass paths in a dict"
        )
    return _read_content(spec, where)


def _read_content(spec: Any, where: str) -> bytes:
    if isinstance(spec, bytes):
        _check_size(len(spec), where)
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return _read_path(os.fsdecode(spec), where)
    if hasattr(spec, "read"):
        return _read_file(spec, where)
    raise InvalidAttachment(where, spec, "must be a path, a file object, bytes, or a dict with 'file'")


def _read_path(path: str, where: str) -> bytes:
    """Read a file under ``ATTACHMENT_DIRS``, its links and ``..`` resolved first; its size checked before reading."""
    allowed = po_settings.ATTACHMENT_DIRS
    if not allowed:
        raise InvalidAttachment(
            where,
            path,
            "is a file path, and no directory is allowed: list its directory in POST_OFFICE['ATTACHMENT_DIRS'] "
            "or pass the content (bytes or a file object)",
        )
    real = os.path.realpath(path)
    if not any(_inside(real, os.path.realpath(directory)) for directory in allowed):
        raise InvalidAttachment(
            where, path, "is outside the directories POST_OFFICE['ATTACHMENT_DIRS'] allows (links and '..' resolved)"
        )
    try:
        handle = os.fdopen(os.open(real, _OPEN_FLAGS), "rb")
    except OSError as error:
        raise InvalidAttachment(where, path, f"cannot be read: {error.strerror}") from None
    with handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidAttachment(where, path, "is not a regular file")
        _check_size(info.st_size, where)
        try:
            return _read_limited(handle, where, size_known=True)
        except OSError as error:
            raise InvalidAttachment(where, path, f"cannot be read: {error.strerror}") from None


def _inside(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:  # different drives
        return False


def _read_file(spec: Any, where: str) -> bytes:
    """Read a file object from its start; a known size is checked before reading, any other while reading."""
    if hasattr(spec, "seek"):
        try:
            spec.seek(0)
        except (OSError, ValueError):
            pass
    size = _known_size(spec)
    if size is not None:
        _check_size(size, where)
    data = _read_limited(spec, where, size_known=size is not None)
    if isinstance(data, str):
        data = data.encode()
        _check_size(len(data), where)
    if not isinstance(data, bytes):
        raise InvalidAttachment(where, spec, "did not read as bytes or text")
    return data


def _known_size(spec: Any) -> int | None:
    try:
        size = getattr(spec, "size", None)  # Django's File, ContentFile, uploaded files
        if isinstance(size, int):
            return size
        return os.fstat(spec.fileno()).st_size
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _read_limited(handle: Any, where: str, size_known: bool) -> Any:
    """Read to the end; a stream of unknown size in chunks, never more than one chunk past MAX_ATTACHMENT_SIZE."""
    limit = po_settings.MAX_ATTACHMENT_SIZE
    if limit is None or size_known:
        data = handle.read()
        if data is not None:
            _check_size(len(data), where)  # the file may have grown since its size was read
        return data
    chunks = []
    total = 0
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            _check_size(total, where, at_least=True)
    if len(chunks) == 1:
        return chunks[0]
    return (b"" if not chunks or isinstance(chunks[0], bytes) else "").join(chunks)


def check_message_size(email: Email, attachments: Sequence[AttachmentData]) -> None:
    """Refuse an email whose subject, bodies, alternatives and attachments exceed ``MAX_MESSAGE_SIZE`` bytes.

    Counted before MIME encoding. Mail rendered at delivery counts only its attachments here.
    """
    limit = po_settings.MAX_MESSAGE_SIZE
    if limit is None:
        return
    texts = [email.subject or "", email.message or "", email.html_message or ""]
    texts += [content for content, _mimetype in email.alternatives or []]
    size = sum(len(data.content) for data in attachments)
    if size + 4 * sum(len(text) for text in texts) <= limit:
        return  # UTF-8 takes at most 4 bytes a character: no need to encode anything
    size += sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    if size > limit:
        field = "attachments" if attachments else "message"
        raise MessageTooLarge(
            field,
            None,
            f"bring the email to {size} bytes (subject, bodies and attachments), "
            f"more than POST_OFFICE['MAX_MESSAGE_SIZE'] allows ({limit} bytes)",
        )


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def store_attachments(per_email: Sequence[tuple[Email, list[AttachmentData]]]) -> None:
    """Store attachments for saved emails in a constant number of queries.

    Content is stored once per distinct SHA-256 (under a random name), and one
    Attachment row per distinct (content, name, type, headers) is shared by
    every email that attaches it. A reused row is kept safe from
    ``cleanup_mail --delete-attachments`` until this transaction commits (see
    :func:`stored_rows`).
    """
    wanted = [(email, data) for email, items in per_email for data in items]
    if not wanted:
        return
    rows = attachment_rows([data for _email, data in wanted])
    through = Attachment.emails.through
    seen: set[tuple[int, int]] = set()
    through_rows = []
    for (email, _data), row in zip(wanted, rows, strict=True):
        pair = (row.pk, email.pk)
        if pair not in seen:
            seen.add(pair)
            through_rows.append(through(attachment_id=pair[0], email_id=pair[1]))
    through.objects.bulk_create(through_rows)


def attachment_rows(items: Sequence[AttachmentData], *, share_rows: bool = True) -> list[Attachment]:
    """A saved Attachment row for each item, in order; each distinct content is stored once.

    With ``share_rows`` a row with the same content, name, type and headers is
    reused (a stored one, or one made for an earlier item); without it every
    item gets a row of its own (the content's file is still shared).
    """
    storage = get_attachment_storage()
    hashes = {content_hash(data.content): data.content for data in items}
    rows: dict[tuple[str, str, str, str], Attachment] = {}
    stored = stored_rows(hashes)
    for row in stored if share_rows else ():
        rows.setdefault(_key(row.content_hash, row.name, row.mimetype, row.headers), row)
    paths = {row.content_hash: row.file.name for row in stored}
    new_rows: list[Attachment] = []
    result: list[Attachment] = []
    for data in items:
        digest = content_hash(data.content)
        key = _key(digest, data.name, data.mimetype, data.headers)
        found = rows.get(key) if share_rows else None
        if found is None:
            if digest not in paths:
                paths[digest] = _save_content(storage, hashes[digest])
            row = Attachment(content_hash=digest, name=data.name, mimetype=data.mimetype, headers=data.headers)
            row.file.name = paths[digest]
            rows[key] = row
            new_rows.append(row)
        else:
            row = found
        result.append(row)
    if new_rows:
        Attachment.objects.bulk_create(new_rows)
    return result


def stored_rows(digests: Collection[str]) -> list[Attachment]:
    """The stored rows of these contents that this transaction may link to.

    ``cleanup_mail`` deletes a row that no email uses only when its
    ``last_used`` is older than ``Attachment.ORPHAN_GRACE``, in one conditional
    DELETE. A row read here with a ``last_used`` newer than ``TOUCH_AFTER`` is
    safe for the rest of the grace period; an older one is refreshed, which
    locks it until this transaction commits (the DELETE waits, then sees the
    new time). A row deleted between the read and the refresh is left out, so
    its content is stored again.
    """
    found = _find_rows(digests)
    now = timezone.now()
    stale = [row.pk for row in found if row.last_used < now - Attachment.TOUCH_AFTER]
    if not stale:
        return found
    touched = Attachment.objects.filter(pk__in=stale).update(last_used=now)
    if touched == len(stale):
        return found
    # A locking read sees what is committed now, even under MySQL's repeatable read.
    alive = set(Attachment.objects.select_for_update().filter(pk__in=stale).values_list("pk", flat=True))
    return [row for row in found if row.pk in alive or row.pk not in stale]


def _find_rows(digests: Collection[str]) -> list[Attachment]:
    return list(Attachment.objects.filter(content_hash__in=list(digests)).order_by("pk"))


def _key(digest: str, name: str, mimetype: str, headers: Mapping[str, str] | None) -> tuple[str, str, str, str]:
    return digest, name, mimetype or "", repr(sorted((headers or {}).items()))


def _save_content(storage: Storage, content: bytes) -> str:
    """Save under a random name (128 bits): the content's hash would let anyone who can guess a file fetch it."""
    token = secrets.token_hex(16)
    return str(storage.save(f"{STORAGE_DIR}/{token[:2]}/{token}", ContentFile(content)))
