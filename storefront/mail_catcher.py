"""The sandbox's mail catcher: a local SMTP server that keeps each message as an ``.eml`` file.

In sandbox mode ``scripts/run.sh`` starts ``flask mail-catcher`` and points ``MAIL_SERVER`` /
``MAIL_PORT`` at it, so mail never leaves the machine; the development page ``/dev/mail``
(storefront/web/dev_mail.py) reads the same directory.

* It listens on 127.0.0.1 only (:data:`HOST`): nothing else on the network can send to it.
* Each message is written whole or not at all (a temporary file in the same directory, then
  ``os.replace``), named ``<UTC time>-<random>.eml`` so names sort oldest first; the SMTP
  envelope (sender, recipients, Bcc included) is kept in ``X-Catcher-*`` headers on top.
* Only the newest ``keep`` (default 500) files stay; older ones are deleted after each write.

The reading side (:func:`list_messages`, :func:`read_message`) parses the files with the
standard library's ``email`` package; a name is accepted only if it looks like one we wrote.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DEFAULT_PORT = 8025
DEFAULT_KEEP = 500
KIND_HEADER = "X-Storefront-Kind"
#: names this module writes: 20261130T101112.123456Z-1a2b3c4d.eml
NAME_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}\.eml$")
SUFFIX = ".eml"


def dev_mail_dir(config: Any, instance_path: str) -> Path:
    """The catcher's directory: ``MAIL_CATCHER_DIR``, else ``<instance>/mail``."""
    configured = config.get("MAIL_CATCHER_DIR")
    return Path(configured) if configured else Path(instance_path) / "mail"


def message_name(now: datetime | None = None) -> str:
    """A new file name that sorts after every earlier one (time first) and never collides."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(4)}{SUFFIX}"


def _envelope_headers(mail_from: str | None, rcpt_tos: list[str]) -> bytes:
    """The SMTP envelope as headers (who it was really sent to, Bcc included); CR/LF stripped."""

    def clean(value: str) -> str:
        return re.sub(r"[\r\n]", "", value)

    lines = [f"X-Catcher-Envelope-From: {clean(mail_from or '')}"]
    lines.append(f"X-Catcher-Envelope-To: {', '.join(clean(r) for r in rcpt_tos)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def write_message(directory: Path, content: bytes, *, keep: int = DEFAULT_KEEP) -> Path:
    """Write one message atomically (complete or absent), then keep only the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    name = message_name()
    temp = directory / f".{name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        final = directory / name
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    prune(directory, keep)
    return final


def prune(directory: Path, keep: int) -> int:
    """Delete all but the newest ``keep`` messages; returns how many were deleted."""
    names = sorted(p.name for p in directory.iterdir() if NAME_RE.match(p.name))
    excess = names[: max(0, len(names) - keep)]
    for name in excess:
        (directory / name).unlink(missing_ok=True)
    return len(excess)


class MailDirHandler:
    """aiosmtpd handler: every message accepted is written into ``directory``."""

    def __init__(self, directory: str | Path, keep: int = DEFAULT_KEEP) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        data = _envelope_headers(envelope.mail_from, list(envelope.rcpt_tos)) + content
        await asyncio.get_running_loop().run_in_executor(None, self._write, data)
        return "250 Message accepted for delivery"

    def _write(self, data: bytes) -> Path:
        with self._lock:  # one write-and-prune at a time
            return write_message(self.directory, data, keep=self.keep)


class MailCatcher:
    """The SMTP server on ``HOST:port`` in a background thread (aiosmtpd's Controller)."""

    def __init__(self, directory: str | Path, port: int = DEFAULT_PORT, keep: int = DEFAULT_KEEP) -> None:
        from aiosmtpd.controller import Controller

        self.handler = MailDirHandler(directory, keep)
        self.port = port
        self._controller = Controller(self.handler, hostname=HOST, port=port, enable_SMTPUTF8=True)

    @property
    def directory(self) -> Path:
        return self.handler.directory

    def start(self) -> MailCatcher:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaughtMail:
    """One caught message, parsed."""

    name: str
    received_at: datetime
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message.get("To") or self.message.get("X-Catcher-Envelope-To") or "")

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject") or "")

    @property
    def kind(self) -> str:
        return str(self.message.get(KIND_HEADER) or "")

    def part(self, subtype: str) -> str | None:
        """The ``text/<subtype>`` body (``plain`` or ``html``), decoded, or None."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_type() != f"text/{subtype}":
            return None
        try:
            content = body.get_content()
        except (LookupError, ValueError):  # a charset Python doesn't know: show it as UTF-8
            raw = body.get_payload(decode=True)
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
        return content if isinstance(content, str) else None

    def headers(self) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in self.message.items()]


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name))


def _received_at(name: str, message: EmailMessage) -> datetime:
    try:
        return datetime.strptime(name[:22], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
    except ValueError:  # pragma: no cover - NAME_RE guarantees the format
        date = message.get("Date")
        return parsedate_to_datetime(str(date)) if date else datetime.now(UTC)


def read_message(directory: str | Path, name: str) -> CaughtMail | None:
    """The message called ``name`` in ``directory``, or None (unknown, deleted or not our name)."""
    if not valid_name(name):
        return None
    try:
        data = (Path(directory) / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # noqa: S101 - policy.default makes EmailMessage
    return CaughtMail(name=name, received_at=_received_at(name, message), message=message)


def list_messages(directory: str | Path, limit: int = 200) -> list[CaughtMail]:
    """The newest ``limit`` caught messages, newest first (none when the directory is absent)."""
    folder = Path(directory)
    try:
        names = sorted((p.name for p in folder.iterdir() if valid_name(p.name)), reverse=True)
    except FileNotFoundError:
        return []
    found = []
    for name in names[:limit]:
        mail = read_message(folder, name)
        if mail is not None:  # pruned between listing and reading
            found.append(mail)
    return found
