"""post_office: a durable, validated email queue for Django.

Public API::

    from post_office import mail
    mail.send(["to@example.com"], template="welcome", context={...})

    EMAIL_BACKEND = "post_office.EmailBackend"
"""

from typing import Any

from .backends import EmailBackend, queue_options
from .version import __version__

__all__ = [
    "EmailBackend",
    "__version__",
    "mail",
    "send_mail",
    "send_html_mail",
    "send_mass_mail",
    "mail_admins",
    "mail_managers",
    "render_preview",
    "queue_options",
    "TemplatedEmailMessage",
]

VERSION = tuple(int(part) for part in __version__.split("."))

_LAZY = {"send_mail", "send_html_mail", "send_mass_mail", "mail_admins", "mail_managers"}


def __getattr__(name: str) -> Any:
    # The mail module imports models, so it loads only once the app registry is ready.
    if name == "mail" or name in _LAZY:
        import importlib

        module = importlib.import_module(".mail", __name__)
        return module if name == "mail" else getattr(module, name)
    if name == "render_preview":
        from .rendering import render_preview

        return render_preview
    if name == "TemplatedEmailMessage":
        # templated_mail's module imports Django's views and sites: load it on first use.
        from .templated import TemplatedEmailMessage

        return TemplatedEmailMessage
    raise AttributeError(f"module 'post_office' has no attribute {name!r}")
