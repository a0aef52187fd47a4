"""Currencies and amounts: the currencies the sandbox accepts, Stripe's minimum and maximum
charge amounts, and amounts formatted as Stripe's messages and the pages show them.

Amounts are integers in the currency's smallest unit (cents; yen for zero-decimal currencies).
"""

from __future__ import annotations

from typing import Any

from . import errors

ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
#: Stripe's minimum charge amounts (smallest unit); other supported currencies: 50
MINIMUMS = {
    "usd": 50,
    "eur": 50,
    "gbp": 30,
    "aud": 50,
    "cad": 50,
    "chf": 50,
    "dkk": 250,
    "hkd": 400,
    "jpy": 50,
    "mxn": 1000,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "sek": 300,
    "sgd": 50,
    "czk": 1500,
    "huf": 17500,
    "brl": 50,
    "inr": 50,
    "ron": 200,
    "bgn": 100,
    "thb": 1000,
    "aed": 200,
    "myr": 200,
}
CURRENCIES = (
    set(MINIMUMS)
    | ZERO_DECIMAL
    | {
        "ils",
        "isk",
        "try",
        "zar",
        "php",
        "idr",
        "twd",
        "sar",
        "qar",
        "egp",
        "ngn",
        "kes",
        "cop",
        "pen",
        "ars",
        "uah",
        "rsd",
        "mad",
        "pkr",
        "lkr",
        "bdt",
    }
)
MAX_AMOUNT = 99999999


def format_amount(amount: int, currency: str) -> str:
    """An amount as Stripe's amount errors state it (``$0.50``)."""
    if currency in ZERO_DECIMAL:
        return f"{amount:,}"
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$"}.get(currency, "")
    return f"{symbol}{amount / 100:,.2f}"


def check_amount(amount: Any, currency: str) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise errors.invalid_request(
            "This value must be greater than or equal to 1.", param="amount", code="parameter_invalid_integer"
        )
    minimum = MINIMUMS.get(currency, 50)
    if amount < minimum:
        raise errors.invalid_request(
            f"Amount must be at least {format_amount(minimum, currency)} {currency}",
            param="amount",
            code="amount_too_small",
        )
    if amount > MAX_AMOUNT:
        raise errors.invalid_request(
            f"Amount must be no more than {format_amount(MAX_AMOUNT, currency)}",
            param="amount",
            code="amount_too_large",
        )


def check_currency(currency: Any) -> str:
    value = str(currency or "").lower()
    if value not in CURRENCIES:
        raise errors.invalid_request(
            f"Invalid currency: {value}. Stripe currently supports these currencies: " + ", ".join(sorted(CURRENCIES)),
            param="currency",
            code="parameter_invalid",
        )
    return value


_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "chf": "CHF ", "inr": "₹"}


def format_money(amount: int | None, currency: str | None) -> str:
    """Integer minor units -> what a buyer reads: ``1999, "usd"`` -> ``$19.99``."""
    if amount is None:
        return ""
    currency = (currency or "").lower()
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if currency in ZERO_DECIMAL:
        number = f"{amount:,}"
    else:
        number = f"{amount // 100:,}.{amount % 100:02d}"
    symbol = _SYMBOLS.get(currency)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {currency.upper()}"


def format_refund_amount(amount: int, currency: str) -> str:
    """An amount as a refund error message states it (``$12.00``, ``500 jpy``)."""
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency}"
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower(), "")
    return f"{symbol}{amount / 100:.2f}" if symbol else f"{amount / 100:.2f} {currency}"


def format_invoice_amount(amount: int, currency: str) -> str:
    """An amount as invoice line descriptions and the invoice pages show it."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}.get(currency, "")
    if currency in ("jpy", "krw"):
        text = f"{abs(amount):,}"
    else:
        text = f"{abs(amount) / 100:,.2f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"
