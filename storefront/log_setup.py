"""Structured logs: one line per request and per job, JSON in production.

``LOG_FORMAT=json`` writes every ``storefront.*`` record as one JSON object per line (``ts``,
``level``, ``logger``, ``msg`` and the fields of the request or job it belongs to);
``LOG_FORMAT=text`` (the default outside live mode) writes the same fields as ``key=value`` after
the message, for a developer's console. ``LOG_LEVEL`` (INFO) sets the ``storefront`` logger.

The fields of the current request or job live in a context (a ``ContextVar``, so threads and
workers don't mix): the request layer (``web/request_log.py``) opens one per request with its
request id, :func:`job_scope` one per queue job, and code along the way adds what it knows with
:func:`bind` (the gateway adds Stripe's request ids, services an order id). What is logged is
chosen, never dumped: no headers, cookies, query strings, bodies, e-mail addresses, client
secrets or card data -- only ids and figures.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from . import metrics

__all__ = ["JsonFormatter", "TextFormatter", "bind", "configure", "context", "job_scope", "scope"]

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("storefront_log_context", default=None)
#: the marker of the handler :func:`configure` installs (replaced, never stacked, by a new app)
HANDLER_NAME = "storefront.structured"
#: record attributes every LogRecord has: not copied as fields
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "fields"}

log = logging.getLogger("storefront.job")


def context() -> dict[str, Any]:
    """The fields of the current request or job (empty outside one)."""
    return dict(_CONTEXT.get() or {})


def bind(**fields: Any) -> None:
    """Add ``fields`` (ids and figures only) to the current request's or job's log line."""
    current = _CONTEXT.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def append(name: str, value: Any) -> None:
    """Add ``value`` to the list field ``name`` (e.g. each Stripe request id of a request)."""
    current = _CONTEXT.get()
    if current is not None and value:
        current.setdefault(name, []).append(value)


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """A fresh context for one request or job; yields its (mutable) fields."""
    fields = {k: v for k, v in fields.items() if v is not None}
    token = _CONTEXT.set(fields)
    try:
        yield fields
    finally:
        _CONTEXT.reset(token)


def enter(fields: dict[str, Any]) -> Token[dict[str, Any] | None]:
    """:func:`scope` without the context manager, for the per-request layer (every microsecond
    there is paid on every request): ``fields`` (no None values) becomes the current context
    until :func:`leave` is given the token."""
    return _CONTEXT.set(fields)


def leave(token: Token[dict[str, Any] | None]) -> None:
    _CONTEXT.reset(token)


def emit(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` with exactly ``fields`` (the caller checked ``isEnabledFor``): the record
    is made directly, without ``Logger.log``'s search of the stack for the caller (unused by
    these formatters)."""
    record = logger.makeRecord(logger.name, level, "(unknown file)", 0, message, (), None, extra={"fields": fields})
    logger.handle(record)


@contextmanager
def job_scope(task: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Around one queue job: one log line when it ends (task, outcome, duration_ms, the job's
    fields and whatever was bound meanwhile) and the job metrics. Exceptions pass through."""
    started = time.perf_counter()
    with scope(job_id=uuid.uuid4().hex[:16], task=task, **fields) as current:
        outcome = "error"
        try:
            yield current
            outcome = "ok"
        finally:
            seconds = time.perf_counter() - started
            metrics.observe_job(task, seconds, outcome)
            current.update(outcome=outcome, duration_ms=round(seconds * 1000, 2))
            (log.info if outcome == "ok" else log.warning)("job %s %s", task, outcome, extra={"fields": dict(current)})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields (``extra={"fields": {...}}`` or plain extras), else the context's."""
    explicit = getattr(record, "fields", None)
    fields = dict(explicit) if isinstance(explicit, Mapping) else context()
    attributes = record.__dict__
    for key in attributes.keys() - _STANDARD:  # plain extras (a set difference: no loop in Python)
        if not key.startswith("_"):
            fields.setdefault(key, attributes[key])
    return fields


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """ISO 8601 UTC to the millisecond; the part up to the second is made once a second (kept
        as one tuple: threads replace it whole)."""
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for a console."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's own text (local time, ``,mmm``), its part up to the second made once a second."""
        second = int(record.created)
        cached, text = self._second
        if cached != second:
            text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        if not fields:
            return text
        head, newline, rest = text.partition("\n")  # a traceback stays below the fields
        return f"{head} {fields}{newline}{rest}"


def configure(config: Mapping[str, Any]) -> logging.Handler:
    """Send ``storefront.*`` records to stderr in ``LOG_FORMAT`` at ``LOG_LEVEL`` (one handler
    per process: a later app replaces it)."""
    logger = logging.getLogger("storefront")
    logger.setLevel(str(config.get("LOG_LEVEL") or "INFO").upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if config.get("LOG_FORMAT") == "json" else TextFormatter())
    for old in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    return handler
