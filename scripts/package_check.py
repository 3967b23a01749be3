"""``make package-check``: the package as a user gets it.

1. Build the sdist and the wheel with ``python -m build`` into ``dist/``, from a
   copy of the files a fresh clone would have (the wheel is built from the sdist,
   so the sdist must be complete); any warning in the build output fails the check.
2. ``twine check --strict`` both (the README renders on PyPI, the metadata is valid).
3. The wheel holds exactly the package's files as the checkout has them (every file
   under ``post_office/`` that git tracks or would track: modules, migrations,
   templates, static files, ``.po`` and compiled ``.mo`` catalogues, ``py.typed``),
   and the metadata is in PEP 639 form (``License-Expression: MIT``, the license
   file, no license classifier).
4. The sdist is the source: the package, README.rst, LICENSE, the build
   configuration, the documentation's sources and the test suite with the example
   project it runs (MANIFEST.in), every file git tracks there and nothing else.
5. A fresh virtualenv outside the checkout gets the wheel (not the checkout) and
   the demo runs there from a copy of the example project; the demo says where
   ``post_office`` was imported from, which must be that virtualenv. Then the
   installed package's admin pages render from its templates, the static files
   they link resolve to the installed package, its German catalogue translates,
   and its migrations match its models.

Run with the interpreter of a virtualenv that has ``build`` and ``twine`` (the
Makefile's .venv-package). Exits non-zero and says which check failed.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
PACKAGE = "post_office"
#: The sdist ships these files of the checkout and every file git tracks in these folders (MANIFEST.in).
SDIST_FILES = {"README.rst", "LICENSE", "pyproject.toml", "setup.cfg", "MANIFEST.in", "manage.py", "Makefile"}
SDIST_FOLDERS = (PACKAGE, "docs", "tests", "migrations_tests", "example", "scripts")
#: Lines of the build's output that are warnings (setuptools' "WARNING ...", distutils' "warning: ...",
#: any "...Warning", a MANIFEST.in line that matches nothing), but not file names such as warnings.py.
WARNING = re.compile(r"(?i)\bwarn(ing)?\b|\w+warning\b|previously-included|no files found matching")


class CheckFailed(Exception):
    pass


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(str(part) for part in command), flush=True)
    return subprocess.run(command, check=False, text=True, **kwargs)


def checkout_files(folder: str) -> set[str]:
    """The files git tracks (or would track: new files not ignored) under ``folder``, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", folder],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    return {name for name in listed if name and (ROOT / name).is_file()}


def build() -> tuple[Path, Path]:
    DIST.mkdir(exist_ok=True)
    for old in [*DIST.glob("*.whl"), *DIST.glob("*.tar.gz")]:
        old.unlink()
    # Without PYTHONDONTWRITEBYTECODE from the caller's shell, which setuptools reports as a warning.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="post_office-build-") as scratch:
        # From a copy of what a fresh clone would hold: setuptools reads a checkout's old *.egg-info/SOURCES.txt
        # (pip install -e leaves one), which would hide a file the configuration no longer ships.
        source = Path(scratch)
        for name in checkout_files("."):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
        result = run([sys.executable, "-m", "build", "--outdir", str(DIST), str(source)], env=env, capture_output=True)
    output = result.stdout + result.stderr
    print(output)
    if result.returncode:
        raise CheckFailed(f"python -m build failed with status {result.returncode}")
    warnings = [line.strip() for line in output.splitlines() if WARNING.search(line)]
    if warnings:
        raise CheckFailed("the build printed warnings:\n  " + "\n  ".join(warnings))
    [wheel] = DIST.glob("*.whl")
    [sdist] = DIST.glob("*.tar.gz")
    return wheel, sdist


def twine_check(wheel: Path, sdist: Path) -> None:
    if run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)]).returncode:
        raise CheckFailed("twine check --strict failed")


def compare(what: str, got: set[str], expected: set[str]) -> list[str]:
    problems = [f"{what} lacks {name}" for name in sorted(expected - got)]
    problems += [f"{what} has {name}, which the checkout does not" for name in sorted(got - expected)]
    return problems


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    dist_info = metadata_name.rsplit("/", 1)[0]
    package_files = {name for name in names if not name.startswith(dist_info + "/")}
    expected = checkout_files(PACKAGE)
    problems = compare("the wheel", package_files, expected)
    # Spelled out too, so that an empty listing cannot pass: each kind of package data is there.
    for kind, pattern in {
        "compiled catalogues": rf"^{PACKAGE}/locale/[^/]+/LC_MESSAGES/django\.mo$",
        "migrations": rf"^{PACKAGE}/migrations/0001_\w+\.py$",
        "templates": rf"^{PACKAGE}/templates/.+\.html$",
        "static files": rf"^{PACKAGE}/static/{PACKAGE}/.+\.(js|css)$",
        "py.typed": rf"^{PACKAGE}/py\.typed$",
    }.items():
        if not any(re.match(pattern, name) for name in package_files):
            problems.append(f"the wheel has no {kind}")
    for po in sorted(name for name in expected if name.endswith(".po")):
        if po[:-3] + ".mo" not in package_files:
            problems.append(f"the wheel has {po} but not its compiled {po[:-3]}.mo")
    problems += check_metadata(metadata, names, dist_info)
    if problems:
        raise CheckFailed("\n  ".join(["the wheel is not what the checkout holds:", *problems]))
    print(f"wheel: {len(package_files)} package files, as in the checkout; metadata {metadata['Metadata-Version']}")


def check_metadata(metadata: email.message.Message, names: set[str], dist_info: str) -> list[str]:
    problems = []
    if metadata["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {metadata['License-Expression']!r}, not 'MIT'")
    if metadata.get_all("License-File") != ["LICENSE"] or f"{dist_info}/licenses/LICENSE" not in names:
        problems.append(
            f"the license file is not shipped as License-File: LICENSE ({metadata.get_all('License-File')})"
        )
    license_classifiers = [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    if license_classifiers:
        problems.append(f"license classifiers are deprecated by PEP 639: {license_classifiers}")
    if metadata["License"]:
        problems.append(f"the legacy License field is set: {metadata['License']!r}")
    return problems


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = [member.name for member in archive.getmembers() if member.isfile()]
    top = sdist.name[: -len(".tar.gz")]
    files = {name.removeprefix(top + "/") for name in members}
    generated = {name for name in files if name == "PKG-INFO" or ".egg-info/" in name}
    expected = set(SDIST_FILES)
    for folder in SDIST_FOLDERS:
        expected |= checkout_files(folder)
    problems = compare("the sdist", files - generated, expected)
    if problems:
        raise CheckFailed("\n  ".join(["the sdist is not the checkout's source (see MANIFEST.in):", *problems]))
    print(f"sdist: {len(files)} files: the package, README.rst, LICENSE, docs/, the tests and the example project")


#: Run by the installed package, in the copied example project, on the database the demo filled.
SMOKE = r"""
import os, re, sys
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
django.setup()

from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import NoReverseMatch, reverse
from django.utils import translation

import post_office
from post_office.models import EmailTemplate

package = Path(post_office.__file__).resolve().parent
setup_test_environment()  # records the templates each page renders
client = Client()
client.force_login(User.objects.create_superuser("package-check", "package-check@example.com", None))
pages, statics, templates = [], set(), set()
for model in admin.site._registry:
    if model._meta.app_label != "post_office":
        continue
    info = (model._meta.app_label, model._meta.model_name)
    pages.append(reverse("admin:%s_%s_changelist" % info))
    first = model._default_manager.order_by("pk").first()
    try:
        if first is not None:
            pages.append(reverse("admin:%s_%s_change" % info, args=[first.pk]))
    except NoReverseMatch:
        pass  # a page without a change view (the delivery health page)
for url in pages:
    response = client.get(url)
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    html = response.content.decode()
    statics.update(re.findall(r"/static/(post_office/[^\"'?#\s]+)", html))
    templates.update(
        Path(t.origin.name).resolve() for t in response.templates if t.origin and t.name.startswith("admin/post_office/")
    )
assert templates, "no page rendered one of post_office's templates"
outside = [str(t) for t in templates if not t.is_relative_to(package)]
assert not outside, f"templates rendered from outside the installed package: {outside}"
assert statics, "no page links a post_office static file"
for name in sorted(statics):
    found = finders.find(name)
    assert found and Path(found).resolve().is_relative_to(package), f"static {name}: found {found}"
with translation.override("de"):
    german = str(EmailTemplate._meta.verbose_name_plural)
with translation.override("en"):
    english = str(EmailTemplate._meta.verbose_name_plural)
assert german != english, f"the German catalogue does not translate {english!r}"
leaves = MigrationLoader(None).graph.leaf_nodes("post_office")
call_command("makemigrations", "post_office", check=True, dry_run=True)  # exits 1 when models changed
print(
    f"INSTALLED OK: {len(pages)} admin pages rendered {len(templates)} post_office templates from {package}; "
    f"{len(statics)} static files found there; German catalogue ({english!r} -> {german!r}); "
    f"migrations up to {leaves[0][1]} match the models"
)
"""


def run_from_wheel(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="post_office-package-check-") as scratch:
        tmp = Path(scratch)
        venv, project = tmp / "venv", tmp / "project"
        if run([sys.executable, "-m", "venv", str(venv)]).returncode:
            raise CheckFailed("could not create a virtualenv")
        python = venv / "bin" / "python"
        # The demo's SMTP server (tests/smtp_sink.py) needs aiosmtpd; the demo itself needs no extra.
        if run([str(python), "-m", "pip", "install", "-q", str(wheel), "aiosmtpd>=1.4.6"]).returncode:
            raise CheckFailed("pip could not install the wheel")
        ignore = shutil.ignore_patterns("*.sqlite3*", "demo_media", "media", "__pycache__")
        shutil.copytree(ROOT / "example", project / "example", ignore=ignore)
        (project / "tests").mkdir()
        for name in ("tests/__init__.py", "tests/smtp_sink.py", "manage.py"):
            shutil.copy2(ROOT / name, project / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEMO_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(PYTHONNOUSERSITE="1", DEMO_DB_PATH=str(tmp / "demo.sqlite3"), DEMO_MEDIA_ROOT=str(tmp / "media"))

        demo = run([str(python), "example/demo.py"], cwd=project, env=env, capture_output=True)
        print(demo.stdout, demo.stderr, sep="\n")
        if demo.returncode or "DEMO OK" not in demo.stdout:
            raise CheckFailed(f"the demo failed on the installed wheel (status {demo.returncode})")
        found = re.search(r"^post_office \S+ imported from (.+)$", demo.stdout, re.MULTILINE)
        if not found:
            raise CheckFailed("the demo did not say where post_office was imported from")
        origin = Path(found[1]).resolve()
        if not origin.is_relative_to(venv.resolve()) or "site-packages" not in origin.parts:
            raise CheckFailed(f"the demo imported post_office from {origin}, not from the wheel in {venv}")

        (project / "package_smoke.py").write_text(SMOKE)
        smoke = run([str(python), "package_smoke.py"], cwd=project, env=env, capture_output=True)
        print(smoke.stdout, smoke.stderr, sep="\n")
        if smoke.returncode:
            raise CheckFailed("the installed package's admin, static files, catalogue or migrations failed")


def main() -> int:
    try:
        wheel, sdist = build()
        twine_check(wheel, sdist)
        check_wheel(wheel)
        check_sdist(sdist)
        run_from_wheel(wheel)
    except CheckFailed as failure:
        print(f"PACKAGE CHECK FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"PACKAGE CHECK OK: {wheel.name} and {sdist.name} in {DIST}; the demo ran on the installed wheel.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
