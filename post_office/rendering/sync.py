"""Database templates to and from block-format files, for version control: export, and import with a dry run.

The file format is :mod:`post_office.rendering.fileformat`. Import reads and
checks every file before it writes anything, then writes all changes in one
transaction. Templates without a file are left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.template import Engine, TemplateSyntaxError

from ..exceptions import PostOfficeError
from ..languages import language_codes, normalize_language
from ..models import EmailTemplate
from ..restricted import database_template_engine
from ..validation import FILE_PREFIX, compile_source, syntax_error_line
from .fileformat import (
    BLOCK_FIELDS,
    EXTENSION,
    FIELDS,
    FormatError,
    file_path_for,
    format_template_file,
    identify,
    parse_blocks,
    parse_template_file,
)

__all__ = [
    "EXTENSION",
    "ExportResult",
    "ImportPlan",
    "TemplateChange",
    "TemplateFile",
    "TemplateFilesError",
    "export_templates",
    "format_template_file",
    "import_templates",
    "parse_template_file",
    "plan_import",
    "read_template_files",
]


class TemplateFilesError(PostOfficeError, ValueError):
    """Template files that cannot be exported or imported; ``errors`` lists every problem.

    Nothing was written when this is raised.
    """

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class TemplateFile:
    """One file read from disk: which template it is and its field values."""

    path: str
    name: str
    language: str
    values: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.name} [{self.language}]" if self.language else self.name


@dataclass
class TemplateChange:
    """What importing one file does: ``action`` is 'create', 'update' or 'unchanged'."""

    file: TemplateFile
    action: str
    #: Field -> unified diff (database -> file), for updates.
    diffs: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportPlan:
    changes: list[TemplateChange]
    dry_run: bool = False

    def by_action(self, action: str) -> list[TemplateChange]:
        return [change for change in self.changes if change.action == action]

    @property
    def has_changes(self) -> bool:
        return any(change.action != "unchanged" for change in self.changes)


# -- export ------------------------------------------------------------------


@dataclass
class ExportResult:
    written: list[str]
    unchanged: list[str]


def export_templates(directory: str | os.PathLike[str], names: Iterable[str] | None = None) -> ExportResult:
    """Write each template (base and translations) to its file under ``directory``.

    ``names`` limits the export to those templates. Every name and language is
    checked first; nothing is written when any cannot be a file. Files whose
    content is already right are not touched.
    """
    templates = EmailTemplate.objects.order_by("name", "language")
    wanted = None if names is None else set(names)
    if wanted is not None:
        templates = templates.filter(name__in=wanted)
        missing = wanted - set(templates.values_list("name", flat=True))
        if missing:
            raise TemplateFilesError([f"{name!r} is not the name of an EmailTemplate" for name in sorted(missing)])
    errors = []
    outputs: dict[str, str] = {}
    seen: dict[str, str] = {}
    codes = language_codes()
    for template in templates:
        label = f"{template.name} [{template.language}]" if template.language else template.name
        try:
            path = file_path_for(template.name, template.language)
        except ValueError as error:
            errors.append(f"{label}: {error}")
            continue
        if template.language and normalize_language(template.language) not in codes:
            errors.append(f"{label}: language {template.language!r} is not in settings.LANGUAGES")
            continue
        folded = path.casefold()
        if folded in seen:
            errors.append(f"{label}: its file {path} differs only in case from that of {seen[folded]}")
            continue
        seen[folded] = label
        values = {name: getattr(template, name) or "" for name in FIELDS}
        text = format_template_file(values)
        try:
            same = parse_template_file(text) == values
        except FormatError:
            same = False
        if not same:
            errors.append(f"{label}: its text cannot be written as blocks and read back unchanged")
            continue
        outputs[path] = text
    if errors:
        raise TemplateFilesError(errors)
    root = Path(directory)
    result = ExportResult(written=[], unchanged=[])
    for path, text in outputs.items():
        target = root / path
        if target.is_file() and _read_or_none(target) == text:
            result.unchanged.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        result.written.append(path)
    return result


def _read(path: Path) -> str:
    # newline="": line endings are content; universal newlines would change them.
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _read_or_none(path: Path) -> str | None:
    try:
        return _read(path)
    except (OSError, UnicodeDecodeError):
        return None


# -- import ------------------------------------------------------------------


def read_template_files(directory: str | os.PathLike[str]) -> list[TemplateFile]:
    """Read and check every ``*.html`` file under ``directory`` (hidden ones skipped).

    Raises :class:`TemplateFilesError` listing every bad file, with its line.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TemplateFilesError([f"{directory}: is not a directory"])
    max_lengths = {
        name: getattr(EmailTemplate._meta.get_field(name), "max_length", None) for name in ("name", "subject")
    }
    engine = database_template_engine()
    files = []
    errors = []
    for target in sorted(root.rglob(f"*{EXTENSION}")):
        relative = target.relative_to(root).as_posix()
        if any(part.startswith(".") for part in target.relative_to(root).parts) or not target.is_file():
            continue
        try:
            name, language = identify(relative)
            try:
                text = _read(target)
            except UnicodeDecodeError as error:
                raise FormatError(1, f"is not UTF-8 text ({error.reason} at byte {error.start})") from None
            parsed = parse_blocks(text)
        except FormatError as error:
            errors.append(f"{relative}, line {error.line}: {error}")
            continue
        values = {model_field: value for model_field, (value, _line) in parsed.items()}
        if name.startswith(FILE_PREFIX):
            errors.append(f"{relative}: template names starting with {FILE_PREFIX!r} are reserved for file templates")
        if len(name) > (max_lengths["name"] or 0):
            errors.append(f"{relative}: the template name is longer than {max_lengths['name']} characters")
        if len(values["subject"]) > (max_lengths["subject"] or 0):
            errors.append(f"{relative}: the subject is longer than {max_lengths['subject']} characters")
        errors.extend(_compile_errors(engine, relative, parsed))
        files.append(TemplateFile(path=relative, name=name, language=language, values=values))
    if errors:
        raise TemplateFilesError(errors)
    return files


def _compile_errors(engine: Engine, path: str, parsed: dict[str, tuple[str, int]]) -> list[str]:
    errors = []
    for model_field in BLOCK_FIELDS.values():
        source, first_line = parsed[model_field]
        if not source:
            continue
        try:
            compile_source(engine, source)
        except TemplateSyntaxError as error:
            line = syntax_error_line(error) or 1
            # The line in the file, not in the block.
            errors.append(f"{path}, line {first_line + line - 1}: {model_field}: {error}")
    return errors


def plan_import(files: Sequence[TemplateFile]) -> ImportPlan:
    """Compare files with the database: what to create, what to update (with diffs), what is unchanged."""
    existing = {
        (template.name, template.language): template
        for template in EmailTemplate.objects.filter(name__in={file.name for file in files})
    }
    bases_in_files = {file.name for file in files if not file.language}
    errors = []
    changes = []
    for file in sorted(files, key=lambda f: (f.name, f.language != "", f.language)):
        current = existing.get((file.name, file.language))
        if current is None:
            if file.language and file.name not in bases_in_files and (file.name, "") not in existing:
                errors.append(
                    f"{file.path}: a translation of {file.name!r}, which has no base template ({file.name}{EXTENSION})"
                )
                continue
            changes.append(TemplateChange(file, "create"))
            continue
        diffs = {}
        for model_field in FIELDS:
            old, new = getattr(current, model_field) or "", file.values[model_field]
            if old != new:
                diffs[model_field] = _diff(
                    old, new, f"database: {file.label} {model_field}", f"{file.path}: {model_field}"
                )
        changes.append(TemplateChange(file, "update" if diffs else "unchanged", diffs))
    if errors:
        raise TemplateFilesError(errors)
    return ImportPlan(changes)


def _diff(old: str, new: str, old_label: str, new_label: str) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm=""))
    if not lines:
        # The same lines: only line endings or a final line break differ.
        lines = [f"--- {old_label}", f"+++ {new_label}", f"(line breaks differ: {old[-12:]!r} -> {new[-12:]!r})"]
    return "\n".join(lines) + "\n"


def apply_import(plan: ImportPlan) -> None:
    """Write a plan's creations and updates in one transaction (base templates first)."""
    with transaction.atomic():
        bases = {
            template.name: template
            for template in EmailTemplate.objects.filter(
                name__in={change.file.name for change in plan.changes}, language=""
            )
        }
        for change in plan.changes:  # sorted: each base before its translations
            if change.action == "unchanged":
                continue
            file = change.file
            if change.action == "create":
                template = EmailTemplate(
                    name=file.name,
                    language=file.language,
                    default_template=bases[file.name] if file.language else None,
                )
            else:
                template = EmailTemplate.objects.get(name=file.name, language=file.language)
            for model_field in FIELDS:
                setattr(template, model_field, file.values[model_field])
            template.save()
            if not file.language:
                bases[file.name] = template


def import_templates(directory: str | os.PathLike[str], *, dry_run: bool = False) -> ImportPlan:
    """Read, check and compare every file under ``directory``; unless ``dry_run``, write the changes."""
    plan = plan_import(read_template_files(directory))
    plan.dry_run = dry_run
    if not dry_run and plan.has_changes:
        apply_import(plan)
    return plan
