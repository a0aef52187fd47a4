from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from ..money import ZERO_DECIMAL, format_or_raw

__all__ = ["ZERO_DECIMAL", "format_money", "safe_next_url", "wants_json"]


def format_money(amount: int | None, currency: str = "usd") -> str:
    """The ``money`` template filter: integer minor units + ISO currency -> "$1,234.50"
    (``None`` -> ""). Formatting itself lives in :mod:`storefront.money`."""
    return format_or_raw(amount, currency)


def safe_next_url(target: str | None) -> str | None:
    """Return ``target`` only if it is a relative path on this site, else None.

    Refuses absolute URLs (``https://evil.com``), scheme-relative ones (``//evil.com``),
    backslash tricks (``/\\evil.com``) and anything with control characters.
    """
    if not target or not isinstance(target, str):
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def wants_json() -> bool:
    """API paths and clients that prefer JSON over HTML get JSON answers."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]
    )
