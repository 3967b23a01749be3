"""Failures that are not one email's fault, and refusals of some recipients of an accepted email.

A connection that cannot be opened (refused, timed out, TLS, login) and a
server that wants credentials it did not get (530, 534, 535, 538) fail every
email sent through that alias alike: retrying each email would only use up its
attempts and fail the whole queue for a configuration mistake. Such *setup*
errors leave the emails queued; the worker stops using the alias for the pass
and says so once. Their text never holds a secret: configured passwords are
cut out, and the text of a ``UnicodeError`` (which quotes the character and its
position in the password) is not shown.

A server may take a message for some recipients and refuse others
(``452 Too many recipients`` after the first hundred): :class:`PartlyRefused`
carries the refused ones, so they can be retried or reported.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterable

from ..exceptions import DeliveryConfigurationError

#: Replies that mean the server wants (other) credentials: 530 authentication required,
#: 534 mechanism too weak, 535 credentials invalid, 538 encryption required for the mechanism.
SETUP_REPLY_CODES = frozenset({530, 534, 535, 538})


class ConnectionFailed(Exception):
    """Opening a connection for a delivery alias failed; ``error`` is what the backend raised."""

    def __init__(self, alias: str, error: BaseException, secrets: Iterable[str] = ()) -> None:
        self.alias = alias
        self.error = error
        super().__init__(setup_text(error, secrets))

    @property
    def kind(self) -> str:
        """The backend's exception type, for logs."""
        return type(self.error).__name__


def is_setup_error(error: BaseException) -> bool:
    """Whether ``error`` is about the connection or the credentials rather than one message."""
    if isinstance(
        error,
        (ConnectionFailed, DeliveryConfigurationError, smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError),
    ):
        return True
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code in SETUP_REPLY_CODES


def setup_text(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """What to say about a setup error: its type and text, with no part of a secret."""
    if isinstance(error, ConnectionFailed):
        return str(error)
    kind = type(error).__name__
    if isinstance(error, UnicodeError):
        # "'ascii' codec can't encode character '\xe9' in position 3" would give away the password's fourth character.
        return (
            f"{kind}: the user name, password or host name holds characters the connection cannot send "
            "(details withheld: they would show part of the credentials)"
        )
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure itself
        text = "<unprintable>"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return f"{kind}: {text}" if text else kind


class PartlyRefused(Exception):
    """The server took the message for some recipients and refused ``refused`` (address -> (code, reply))."""

    def __init__(self, refused: dict[str, tuple[int, bytes]], accepted: int) -> None:
        self.refused = refused
        self.accepted = accepted
        super().__init__(
            f"accepted for {accepted} of {accepted + len(refused)} recipients; refused: "
            + "; ".join(f"{address} ({code} {_text(reply)})" for address, (code, reply) in refused.items())
        )

    def transient(self) -> dict[str, tuple[int, bytes]]:
        """The refusals a later attempt may get past (4xx replies)."""
        return {address: reply for address, reply in self.refused.items() if 400 <= reply[0] < 500}


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
