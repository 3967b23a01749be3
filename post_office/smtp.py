"""Django's SMTP backend that also sends stored emails fast: ``post_office.smtp.EmailBackend``.

Name it wherever a backend path goes (``POST_OFFICE['BACKENDS']``); delivery
uses it in place of Django's SMTP backend anyway. The code lives in
:mod:`post_office.transport.smtp`.
"""

from .transport.smtp import ConnectionBroken, EmailBackend, Wire, WireBackend, send_chain, send_pipelined

__all__ = ["ConnectionBroken", "EmailBackend", "Wire", "WireBackend", "send_chain", "send_pipelined"]
