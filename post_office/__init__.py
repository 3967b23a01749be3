"""post_office: a durable, validated email queue for Django.

Public API::

    from post_office import mail
    mail.send(["to@example.com"], template="welcome", context={...})

    EMAIL_BACKEND = "post_office.EmailBackend"

Every name but the version loads on first use: they import the models, which
Django allows only once the app registry is ready (this package is imported
while ``INSTALLED_APPS`` is being read).
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

#: Public name -> the module that holds it ("" for the module itself).
_NAMES = {
    "mail": "post_office.mail",
    "EmailBackend": "post_office.backends",
    "queue_options": "post_office.backends",
    "send_mail": "post_office.mail",
    "send_html_mail": "post_office.mail",
    "send_mass_mail": "post_office.mail",
    "mail_admins": "post_office.mail",
    "mail_managers": "post_office.mail",
    "render_preview": "post_office.rendering.preview",
    "TemplatedEmailMessage": "post_office.templated",
}

__all__ = ["__version__", "VERSION", "VERSION_STRING", *_NAMES]

VERSION = tuple(int(part) for part in __version__.split("."))
#: django-post_office's name for the version as text.
VERSION_STRING = __version__


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'post_office' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    return loaded if name == "mail" else getattr(loaded, name)
