"""Database templates as block-format files (``manage.py mail_templates``): export and import.

The code lives in :mod:`post_office.rendering.sync`; this path re-exports its public names.
"""

from .rendering.sync import *  # noqa: F403
from .rendering.sync import __all__  # noqa: F401
