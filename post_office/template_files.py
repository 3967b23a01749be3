"""Database templates as block-format files (``manage.py mail_templates``): export and import.

The code lives in :mod:`post_office.rendering.sync`.
"""

from .rendering.sync import (
    EXTENSION,
    ExportResult,
    ImportPlan,
    TemplateChange,
    TemplateFile,
    TemplateFilesError,
    export_templates,
    format_template_file,
    import_templates,
    parse_template_file,
    plan_import,
    read_template_files,
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
