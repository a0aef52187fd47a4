"""Query-string parameters in the web layer: an optional id from ``request.args`` and the strict
``<int:…>`` route converter. The parsers themselves (ids, dates, page cursors) and
:class:`InvalidParameter` live in :mod:`storefront.params`, so services use them too."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from ..params import (
    CURSOR_FORMAT,
    MAX_DATE,
    MAX_ID,
    MIN_DATE,
    InvalidParameter,
    encode_cursor,
    parse_cursor,
    parse_date,
    parse_id,
)

__all__ = [
    "CURSOR_FORMAT",
    "MAX_DATE",
    "MAX_ID",
    "MIN_DATE",
    "InvalidParameter",
    "StrictIntegerConverter",
    "arg_id",
    "encode_cursor",
    "install",
    "parse_cursor",
    "parse_date",
    "parse_id",
]


def arg_id(name: str) -> int | None:
    """An optional id from ``request.args`` (absent or empty -> None)."""
    raw = request.args.get(name)
    return None if raw is None or raw.strip() == "" else parse_id(raw, name)


class StrictIntegerConverter(IntegerConverter):
    """``<int:…>`` in routes: ASCII digits only, 1..MAX_ID; anything else is a 404."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map, *args, **kwargs):  # werkzeug's signature
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def install(app: Flask) -> None:
    """Make every ``<int:…>`` route use :class:`StrictIntegerConverter` (before blueprints register)."""
    app.url_map.converters["int"] = StrictIntegerConverter
