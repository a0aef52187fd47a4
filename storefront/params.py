"""One strict parser for what comes in a query string: ids, page cursors and dates.

Every value is checked before it reaches the database: ids are ASCII digits only, from 1 to
the largest signed 32-bit integer (our id columns are INTEGER: a bigger value overflows them on
PostgreSQL), dates are
``YYYY-MM-DD`` between :data:`MIN_DATE` and :data:`MAX_DATE` (so "the day after" still exists),
and cursors are exactly what :func:`encode_cursor` wrote. A bad value raises
:class:`InvalidParameter`, a 400 whose message names the parameter -- never a 500, and never
a silently different page.

Pure functions (no Flask): services read their parameters through them too; the request-bound
helpers and the route converter live in :mod:`storefront.web.params`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from .services.errors import ServiceError

#: the largest id any of our tables can hold (INTEGER: 32 bits on PostgreSQL)
MAX_ID = 2**31 - 1
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9998, 12, 31)
_DIGITS = re.compile(r"[0-9]{1,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CURSOR = re.compile(r"([0-9]{8}T[0-9]{6}\.[0-9]{6})~([0-9]{1,19})")
CURSOR_FORMAT = "%Y%m%dT%H%M%S.%f"


class InvalidParameter(ServiceError):
    """A query-string value we cannot read for certain: 400, with a message for the user."""

    code = "invalid_parameter"
    status = 400

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.parameter = name


def parse_id(raw: str | None, name: str = "id") -> int:
    """``"42"`` -> 42; anything but 1..MAX_ID in ASCII digits raises :class:`InvalidParameter`."""
    text = (raw or "").strip()
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise InvalidParameter(name, f"“{name}” must be a whole number from 1 to {MAX_ID}.")
    return int(text)


def parse_date(raw: str | None, name: str = "date") -> date:
    """``"2026-01-31"`` -> a date between MIN_DATE and MAX_DATE, else :class:`InvalidParameter`."""
    text = (raw or "").strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(name, f"“{text[:40]}” is not a date (YYYY-MM-DD).") from None
    if not MIN_DATE <= day <= MAX_DATE:
        raise InvalidParameter(
            name, f"“{text}” is out of range: dates go from {MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}."
        )
    return day


def encode_cursor(created_at: datetime, row_id: int) -> str:
    return f"{created_at.astimezone(UTC).strftime(CURSOR_FORMAT)}~{row_id}"


def parse_cursor(raw: str | None, name: str = "after") -> tuple[datetime, int]:
    """A ``(created_at, id)`` keyset position written by :func:`encode_cursor`."""
    match = _CURSOR.fullmatch((raw or "").strip())
    try:
        if match is None:
            raise ValueError(raw)
        stamp = datetime.strptime(match.group(1), CURSOR_FORMAT).replace(tzinfo=UTC)
        row_id = parse_id(match.group(2), name)
    except (ValueError, InvalidParameter):
        raise InvalidParameter(
            name, f"“{name}” is not a page position of this list; go back to the first page."
        ) from None
    return stamp, row_id
