"""Sphinx configuration: offline, no Django import, version from post_office/version.py."""

from __future__ import annotations

import re
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# Read the version as text: importing post_office would need configured Django settings.
_VERSION_TEXT = (_ROOT / "post_office" / "version.py").read_text(encoding="utf-8")
_MATCH = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", _VERSION_TEXT, re.MULTILINE)
if _MATCH is None:
    raise RuntimeError("post_office/version.py does not define __version__")

project = "post_office"
author = "The post_office team"
copyright = "2026, The post_office team"
release = _MATCH.group(1)
version = ".".join(release.split(".")[:2])

# myst_parser: pages written in Markdown (security.md) beside the reStructuredText ones.
extensions: list[str] = ["myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# "## Templates" gets the anchor security.md#templates, for links from other pages.
myst_heading_anchors = 3
language = "en"
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"post_office {release}"
html_theme_options = {"description": "A durable email queue with database templates for Django"}

# The docs describe the API by hand; there is nothing to import.
add_module_names = False
