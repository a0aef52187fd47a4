from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

# ISO 4217 currencies without minor units (Stripe's list of zero-decimal currencies).
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "inr": "₹"}


def format_money(amount: int | None, currency: str = "usd") -> str:
    """Integer minor units + ISO currency -> "$1,234.50". The only place amounts get formatted."""
    if amount is None:
        return ""
    currency = (currency or "usd").lower()
    negative = amount < 0
    amount = abs(int(amount))
    if currency in ZERO_DECIMAL:
        number = f"{amount:,}"
    else:
        number = f"{amount // 100:,}.{amount % 100:02d}"
    symbol = SYMBOLS.get(currency)
    text = f"{symbol}{number}" if symbol else f"{number} {currency.upper()}"
    return f"-{text}" if negative else text


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
    return best == "application/json" and \
        request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]
