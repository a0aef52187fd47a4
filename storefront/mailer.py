"""The one module that talks SMTP (Flask-Mailman).

:func:`send` hands one rendered mail (a plain-text part, an HTML alternative) to the SMTP server
of the settings (``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS`` / ``MAIL_USE_SSL``,
``MAIL_USERNAME`` / ``MAIL_PASSWORD``, ``MAIL_TIMEOUT``), read when the mail is sent (so a test
may point the app at its own server). It is only ever called by the queue's ``send_mail`` task,
with no database transaction open; what to send and when is ``services.mail``'s business.

Every message carries ``X-Storefront-Kind: <kind>`` (the tests and the sandbox's caught-mail
page read it). ``MAIL_PASSWORD`` is never logged: errors are reported by their type and the
server's answer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from flask_mailman import EmailMultiAlternatives, Mail

mail = Mail()

KIND_HEADER = "X-Storefront-Kind"


@dataclass(frozen=True)
class Rendered:
    """A mail ready to go: one recipient, a subject, a text body and its HTML alternative."""

    kind: str
    to: str
    subject: str
    text: str
    html: str


def init_app(app: Flask) -> None:
    mail.init_app(app)


def _connection() -> Any:
    config = current_app.config
    return mail.get_connection(
        backend=config.get("MAIL_BACKEND") or "smtp",
        host=config["MAIL_SERVER"],
        port=config["MAIL_PORT"],
        username=config.get("MAIL_USERNAME"),
        password=config.get("MAIL_PASSWORD"),
        use_tls=bool(config.get("MAIL_USE_TLS")),
        use_ssl=bool(config.get("MAIL_USE_SSL")),
        timeout=config.get("MAIL_TIMEOUT"),
    )


def send(message: Rendered) -> None:
    """Send ``message`` now; raises on any failure (the caller records it and retries)."""
    if not current_app.config.get("MAIL_SERVER"):
        raise RuntimeError("MAIL_SERVER is not set: mail can't be sent")
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=current_app.config.get("MAIL_DEFAULT_SENDER"),
        to=[message.to],
        headers={KIND_HEADER: message.kind},
        connection=_connection(),
    )
    email.attach_alternative(message.html, "text/html")
    if email.send() != 1:
        raise RuntimeError("the SMTP server did not accept the message")
