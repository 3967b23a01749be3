"""The house: imports run downward only, no cycles, small rooms, and every documented import path works.

docs/architecture.rst describes the layout these tests hold the code to; the
import-linter contract in setup.cfg (run by ``make lint``) is run here too.
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

from django.test import SimpleTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "post_office"
ROOT = PACKAGE.parent

#: The only function-local imports of the package's own modules, each commented with why.
ALLOWED_LOCAL_IMPORTS = {
    # django-post_office's doors on the model reach up into message/ and delivery/.
    ("post_office.models", "email_message", "post_office.message.compose"),
    ("post_office.models", "dispatch", "post_office.delivery.worker"),
    # AppConfig.ready() registers the system checks and the Celery receiver.
    ("post_office.apps", "ready", "post_office"),
}
#: Edges a door adds to the import graph (imported when called, not when loaded).
DOORS = {
    ("post_office.models", "post_office.message.compose"),
    ("post_office.models", "post_office.delivery.worker"),
}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_module(node: ast.ImportFrom | ast.Import, module: str, path: Path) -> list[str]:
    """The modules an import statement names, absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module or ""]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return [".".join(base + ([node.module] if node.module else []))]


class LocalImportTest(SimpleTestCase):
    def test_only_the_documented_doors_import_inside_functions(self):
        found = set()
        uncommented = []
        for module, path in modules().items():
            source = path.read_text()
            lines = source.splitlines()
            for function in ast.walk(ast.parse(source)):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(function):
                    if not isinstance(node, (ast.Import, ast.ImportFrom)):
                        continue
                    for target in imported_module(node, module, path):
                        if target == "post_office" or target.startswith("post_office."):
                            found.add((module, function.name, target))
                            before, line = lines[node.lineno - 2].strip(), lines[node.lineno - 1]
                            if not before.startswith("#") and "#" not in line:
                                uncommented.append(f"{module}.{function.name}: {line.strip()}")
        self.assertEqual(found, ALLOWED_LOCAL_IMPORTS)
        self.assertEqual(uncommented, [], "each function-local import says why in a comment")


class SizeTest(SimpleTestCase):
    def test_no_module_over_600_lines_and_no_function_over_80(self):
        too_long = []
        for module, path in modules().items():
            source = path.read_text()
            if len(source.splitlines()) > MAX_MODULE_LINES:
                too_long.append(f"{module}: {len(source.splitlines())} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{module}.{node.name}: {length} lines")
        self.assertEqual(too_long, [])


class ImportGraphTest(SimpleTestCase):
    def graph(self) -> dict[str, set[str]]:
        """Every module's imports of the package's own modules, function-local ones included."""
        known = modules()
        edges: dict[str, set[str]] = {module: set() for module in known}
        for module, path in known.items():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    for target in imported_module(node, module, path):
                        # "from . import claim" names a module of the package.
                        names = [f"{target}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                        for candidate in [*names, target]:
                            if candidate in known and candidate != module and (module, candidate) not in DOORS:
                                edges[module].add(candidate)
                                break
        return edges

    def test_no_import_cycle_between_modules(self):
        edges = self.graph()
        # Tarjan's strongly connected components: any with two or more modules is a cycle.
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        cycles: list[list[str]] = []

        def visit(module: str) -> None:
            index[module] = low[module] = len(index)
            stack.append(module)
            on_stack.add(module)
            for target in edges[module]:
                if target not in index:
                    visit(target)
                    low[module] = min(low[module], low[target])
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

        for module in edges:
            if module not in index:
                visit(module)
        self.assertEqual(cycles, [])

    def test_the_graph_sees_imports(self):
        edges = self.graph()
        self.assertIn("post_office.delivery.claim", edges["post_office.delivery.worker"])
        self.assertIn("post_office.models", edges["post_office.rendering.lookup"])
        self.assertNotIn("post_office.delivery.worker", edges["post_office.models"])

    @unittest.skipUnless(shutil.which("lint-imports", path=str(Path(sys.executable).parent)), "import-linter missing")
    def test_the_import_contract_is_kept(self):
        command = str(Path(sys.executable).parent / "lint-imports")
        result = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


#: Every import path docs/api.rst, docs/migrating.rst, docs/delivery.rst and the README name,
#: with the module that holds each name (None: the path itself holds it).
DOCUMENTED = {
    "post_office": {
        "EmailBackend": "post_office.enqueue.backend",
        "queue_options": "post_office.enqueue.backend",
        "send_mail": "post_office.mail",
        "send_html_mail": "post_office.mail",
        "send_mass_mail": "post_office.mail",
        "mail_admins": "post_office.mail",
        "mail_managers": "post_office.mail",
        "render_preview": "post_office.rendering.preview",
        "TemplatedEmailMessage": "post_office.templated",
        "__version__": "post_office.version",
    },
    "post_office.mail": dict.fromkeys(
        [
            "send",
            "send_many",
            "send_mail",
            "send_html_mail",
            "send_mass_mail",
            "mail_admins",
            "mail_managers",
            "get_queued",
            "send_queued",
        ]
    ),
    "post_office.utils": dict.fromkeys(["send_mail", "get_email_template"]),
    "post_office.backends": {
        "EmailBackend": "post_office.enqueue.backend",
        "queue_options": "post_office.enqueue.backend",
    },
    "post_office.templated": {
        "TemplatedEmailMessage": None,
        "FILE_PREFIX": "post_office.validation",
        "is_file_template": "post_office.validation",
        "check_database_template_name": "post_office.validation",
        "render_file_template": "post_office.rendering.files",
        "RenderedFile": "post_office.rendering.files",
        "file_template_candidates": "post_office.rendering.files",
        "template_context": "post_office.rendering.files",
    },
    "post_office.rendering": {
        "render_preview": "post_office.rendering.preview",
        "Preview": "post_office.rendering.preview",
        "language_chain": "post_office.languages",
        "normalize_language": "post_office.languages",
        "compilations": "post_office.rendering.engine",
    },
    "post_office.inline": {"InlineImage": "post_office.rendering.inline"},
    "post_office.models": {
        **dict.fromkeys(["Email", "EmailTemplate", "Attachment", "Log", "WorkerHeartbeat", "DeliverySwitch"]),
        "get_attachment_storage": None,
        "STATUS": "post_office.choices",
        "PRIORITY": "post_office.choices",
    },
    "post_office.signals": dict.fromkeys(["email_queued", "email_sent", "email_failed"]),
    "post_office.exceptions": dict.fromkeys(
        [
            "PostOfficeError",
            "InvalidEmail",
            "InvalidAddress",
            "InvalidArgument",
            "InvalidHeader",
            "InvalidPriority",
            "InvalidSchedule",
            "InvalidContext",
            "InvalidAttachment",
            "InvalidInlineImage",
            "MissingSender",
            "TemplateConflict",
            "UnknownTemplate",
            "UnknownBackend",
            "MissingVariables",
            "TemplateSyntaxInvalid",
            "TemplateRenderError",
            "AttachmentTooLarge",
            "MessageTooLarge",
            "AttachmentMissing",
            "DeliveryConfigurationError",
        ]
    ),
    "post_office.conf": {"settings": None},
    "post_office.smtp": {"EmailBackend": "post_office.transport.smtp"},
    "post_office.retry": {
        "classify": "post_office.delivery.retry",
        "ErrorKind": "post_office.delivery.retry",
        "is_permanent": "post_office.delivery.retry",
    },
    "post_office.delivery": {"Worker": "post_office.delivery.worker"},
    "post_office.maintenance": dict.fromkeys(["FailedMailFilter", "requeue_failed", "purge_logs"]),
    "post_office.cleanup": {"cleanup_expired_mails": "post_office.maintenance"},
    "post_office.template_files": {
        "export_templates": "post_office.rendering.sync",
        "import_templates": "post_office.rendering.sync",
        "TemplateFilesError": "post_office.rendering.sync",
    },
    "post_office.tasks": dict.fromkeys(["send_queued_mail"]),
    "post_office.template.backends.post_office": dict.fromkeys(["PostOfficeTemplates"]),
    "post_office.templatetags.post_office": dict.fromkeys(["register"]),
}


#: What imports before django.setup() (settings files, ERROR_HANDLER modules, the backend path check).
BEFORE_SETUP = [
    "post_office",
    "post_office.conf",
    "post_office.exceptions",
    "post_office.signals",
    "post_office.validation",
    "post_office.languages",
    "post_office.retry",
    "post_office.smtp",
    "post_office.inline",
    "post_office.checks",
    "post_office.rendering",
    "post_office.delivery",
]


class PublicPathTest(SimpleTestCase):
    def test_the_light_faces_import_before_the_app_registry_is_ready(self):
        code = "import django.apps; " + "; ".join(f"import {name}" for name in BEFORE_SETUP)
        code += "; assert not django.apps.apps.ready"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_every_documented_path_imports_and_re_exports_the_same_objects(self):
        for path, names in DOCUMENTED.items():
            module = importlib.import_module(path)
            for name, home in names.items():
                with self.subTest(f"{path}.{name}"):
                    value = getattr(module, name)
                    if home is not None:
                        self.assertIs(value, getattr(importlib.import_module(home), name))

    def test_mail_is_the_mail_module(self):
        import post_office

        self.assertIs(post_office.mail, importlib.import_module("post_office.mail"))

    def test_backend_paths_in_settings_resolve(self):
        from django.utils.module_loading import import_string

        for dotted in (
            "post_office.EmailBackend",
            "post_office.backends.EmailBackend",
            "post_office.smtp.EmailBackend",
            "post_office.models.get_attachment_storage",
            "post_office.template.backends.post_office.PostOfficeTemplates",
        ):
            with self.subTest(dotted):
                self.assertTrue(callable(import_string(dotted)))
