"""A real SMTP server in the test process (aiosmtpd) that keeps every message it receives.

The test app sends to it (``make_config`` points ``MAIL_SERVER``/``MAIL_PORT`` here), through
Flask-Mailman's SMTP backend, from the real queue's worker threads. Tests ask the ``mail_sink``
fixture (emptied for each test) what arrived:

    message = mail_sink.wait_for(to="buyer@example.com", kind="verify_email")
    link = mail_sink.link(message, "/verify-email/")

Messages are parsed ``email.message.EmailMessage`` objects (``policy.default``); each also
records the SMTP envelope in ``X-Sink-Rcpt-To``. ``SinkHandler`` is aiosmtpd's handler protocol,
reusable by anything that wants the same parsed messages.
"""

from __future__ import annotations

import email
import re
import socket
import threading
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

KIND_HEADER = "X-Storefront-Kind"
LINK_RE = re.compile(r"https?://[^\s<>\"']+")


class SinkHandler:
    """aiosmtpd handler: parses each message (``policy.default``) and calls ``on_message``."""

    def __init__(self, on_message: Callable[[EmailMessage], None]):
        self.on_message = on_message

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Sink-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
        self.on_message(message)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MailSink:
    """The server and what it received (thread-safe: the server runs in its own thread)."""

    def __init__(self) -> None:
        self._messages: list[EmailMessage] = []
        self._changed = threading.Condition()
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._controller = Controller(SinkHandler(self._received), hostname=self.host, port=self.port)
        self._controller.start()

    def _received(self, message: EmailMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def stop(self) -> None:
        self._controller.stop()

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def messages(self, *, to: str | None = None, kind: str | None = None, subject: str | None = None) -> list:
        """What arrived so far (filtered: recipient address, ``X-Storefront-Kind``, a subject part)."""
        with self._changed:
            found = list(self._messages)
        return [m for m in found if _matches(m, to=to, kind=kind, subject=subject)]

    def wait_for(
        self,
        *,
        to: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        count: int = 1,
        timeout: float = 10.0,
    ) -> EmailMessage:
        """The newest matching message once ``count`` of them have arrived (AssertionError after
        ``timeout`` seconds, listing what did arrive)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self._messages if _matches(m, to=to, kind=kind, subject=subject)]
                if len(found) >= count:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m["To"], m[KIND_HEADER], m["Subject"]) for m in self._messages]
                    raise AssertionError(f"no mail to={to} kind={kind} subject={subject} after {timeout} s; got {got}")
                self._changed.wait(left)

    def assert_nothing(self, *, settle: float = 0.5, **filters: str) -> None:
        """Nothing matching arrives within ``settle`` seconds."""
        time.sleep(settle)
        assert self.messages(**filters) == [], f"unexpected mail: {[m['Subject'] for m in self.messages(**filters)]}"

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        return str(part.get_content())

    @staticmethod
    def html(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("html",))
        assert part is not None, "no text/html part"
        return str(part.get_content())

    def link(self, message: EmailMessage, contains: str) -> str:
        """The first link in the text part whose URL contains ``contains``; the HTML part must
        carry the same link."""
        links = [url for url in LINK_RE.findall(self.text(message)) if contains in url]
        assert links, f"no link containing {contains!r} in: {self.text(message)}"
        assert links[0] in self.html(message).replace("&amp;", "&"), "the HTML part lacks the text part's link"
        return links[0]


def _matches(message: EmailMessage, *, to: str | None, kind: str | None, subject: str | None) -> bool:
    if to is not None and to.lower() not in str(message["To"] or "").lower():
        return False
    if kind is not None and message[KIND_HEADER] != kind:
        return False
    return subject is None or subject.lower() in str(message["Subject"] or "").lower()


_sink: MailSink | None = None


def session_sink() -> MailSink:
    """The one sink of this test run (started on first use; the app's config points at it)."""
    global _sink
    if _sink is None:
        _sink = MailSink()
    return _sink


def stop() -> None:
    global _sink
    if _sink is not None:
        _sink.stop()
        _sink = None
