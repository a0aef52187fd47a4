"""Money: the ONE place that parses and formats amounts (integer minor units + ISO currency).

* Digits of a currency are Stripe's: its zero-decimal list (``ZERO_DECIMAL``) wins, the
  three-decimal currencies (KWD, BHD, JOD, OMR, TND) have three, and every other currency --
  even ISK, which CLDR counts without decimals -- is sent to Stripe with two
  (``max(2, babel.numbers.get_currency_precision)``).
* :func:`format_money` goes through Babel with an exact :class:`~decimal.Decimal` and exactly
  the currency's digits (never a float, never rounded).
* :func:`parse_money` is exact and refuses anything it cannot read for certain, with a message
  a person can act on: the locale's decimal and group symbols only (``en``: ``1,234.50``; a
  comma is never a decimal point, and groups must be of three digits, so ``1,50`` is refused),
  ASCII digits only, no ``_``, exponents, NaN/Infinity, signs, zero, more decimals than the
  currency has, nor more than :data:`MAX_DIGITS` digits.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from functools import lru_cache

from babel.core import Locale, UnknownLocaleError
from babel.numbers import (
    format_currency,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
)

#: Stripe's zero-decimal currencies (amounts are whole units: 500 JPY is ``500``)
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
#: Stripe's three-decimal currencies (``1.500`` KWD is ``1500``)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: the longest amount we accept, in minor units (Stripe's own limit is 8 digits for most)
MAX_DIGITS = 15
#: longer input is refused before any parsing
MAX_LENGTH = 40

_CURRENCY = re.compile(r"[a-z]{3}")
_ASCII_DIGITS = frozenset("0123456789")


class MoneyError(ValueError):
    """Text that is not an amount we can read for certain; ``message`` is for a person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _code(currency: str) -> str:
    code = (currency or "").strip().lower()
    if not _CURRENCY.fullmatch(code):
        raise MoneyError("Unknown currency.")
    return code


@lru_cache(maxsize=256)
def minor_digits(currency: str) -> int:
    """How many decimal places ``currency`` has at Stripe (0, 2 or 3)."""
    code = _code(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return max(2, get_currency_precision(code.upper()))


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """``1250, "usd"`` -> ``Decimal("12.50")`` (exact)."""
    digits = minor_digits(currency)
    return Decimal(int(amount_minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


@lru_cache(maxsize=64)
def _locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale or "en")
    except (UnknownLocaleError, ValueError, TypeError) as err:
        raise MoneyError("Unknown locale.") from err


@lru_cache(maxsize=512)
def _pattern(currency: str, locale: str) -> str:
    """The Babel currency pattern for ``currency`` in ``locale``, with exactly its digits."""
    digits = minor_digits(currency)
    frac = "." + "0" * digits if digits else ""
    loc = _locale(locale)
    symbol = get_currency_symbol(currency.upper(), loc)
    if symbol.upper() == currency.upper():
        # no symbol but the code: "19.99 CHF", as the store always wrote it (``¤¤`` is the
        # ISO code), grouped as the locale groups numbers ("#,##,##0" in en_IN)
        number = re.sub(r"\.[0#]+", "", loc.decimal_formats[None].pattern.split(";")[0])
        return re.sub(r"0(?=[^0]*$)", "0" + frac, number, count=1) + " ¤¤"
    standard = loc.currency_formats["standard"].pattern
    return re.sub(r"\.0+", frac, standard)


def format_money(amount_minor: int, currency: str, locale: str = "en") -> str:
    """``123450, "usd"`` -> ``"$1,234.50"``; ``500, "jpy"`` -> ``"¥500"``;
    ``1500, "kwd"`` -> ``"1.500 KWD"``; ``1999, "chf"`` -> ``"19.99 CHF"`` (Babel's
    ``format_currency``, with an exact Decimal and exactly the currency's digits)."""
    code = _code(currency)
    return format_currency(
        to_decimal(amount_minor, code),
        code.upper(),
        format=_pattern(code, locale),
        locale=_locale(locale),
        currency_digits=False,
    )


def format_or_raw(amount_minor: int | None, currency: str | None = "usd", locale: str = "en") -> str:
    """:func:`format_money` for showing an amount whatever it comes with: ``None`` -> ``""``, and
    a currency that is not one (bad data) -> the raw amount and code rather than an error."""
    if amount_minor is None:
        return ""
    try:
        return format_money(int(amount_minor), currency or "usd", locale)
    except MoneyError:
        return f"{amount_minor} {str(currency)[:8].upper()}"


def format_plain(amount_minor: int, currency: str) -> str:
    """``123450, "usd"`` -> ``"1234.50"``: no symbol, no grouping (CSV, form defaults)."""
    return str(to_decimal(amount_minor, currency))


def parse_money(text: str | None, currency: str, locale: str = "en") -> int:
    """``"12.50"`` / ``"$1,234.50"`` / ``"1234.5"`` (USD) -> minor units, exactly; anything
    ambiguous or odd raises :class:`MoneyError` (see the module's docstring)."""
    code = _code(currency)
    digits = minor_digits(code)
    loc = _locale(locale)
    decimal_sym, group_sym = get_decimal_symbol(loc), get_group_symbol(loc)
    example = format_plain(123450, code).replace(".", decimal_sym) if digits else "1234"
    if not isinstance(text, str) or not text.strip():
        raise MoneyError(f"Type an amount, e.g. {example}.")
    if len(text) > MAX_LENGTH:
        raise MoneyError("That amount is far too long.")
    raw = text.strip()
    raw = _strip_currency(raw, code, loc)
    if raw[:1] in ("-", "−", "\u2212") or raw[-1:] == "-":
        raise MoneyError("The amount must be more than zero.")
    allowed = _ASCII_DIGITS | {decimal_sym, group_sym}
    for ch in raw:
        if ch in allowed:
            continue
        if ch.isdigit() or ch.isnumeric():
            raise MoneyError("Use the digits 0-9 only.")
        if ch == "_":
            raise MoneyError(f"Don't use '_' in amounts; type it as e.g. {example}.")
        if ch in "eE" and any(c in _ASCII_DIGITS for c in raw):
            raise MoneyError(f"Type the amount in full (no exponent), e.g. {example}.")
        if unicodedata.category(ch) == "Sc":
            raise MoneyError(f"Type the amount in {code.upper()}, e.g. {example}.")
        if ch in ",." or ch.isspace():
            break  # a separator this locale does not use: explained below
        raise MoneyError(f"Type the amount as a number, e.g. {example}.")
    primary, secondary = loc.decimal_formats[None].grouping  # (3, 3); en_IN: (3, 2)
    group = re.escape(group_sym)
    number = re.fullmatch(
        rf"(?P<int>[0-9]{{1,{secondary}}}(?:{group}[0-9]{{{secondary}}})*{group}[0-9]{{{primary}}}"
        r"|[0-9]+)(?:" + re.escape(decimal_sym) + r"(?P<frac>[0-9]+))?",
        raw,
    )
    if number is None:
        group_name = "a comma" if group_sym == "," else repr(group_sym)
        raise MoneyError(
            f"We can't read {text.strip()!r} for certain: use {decimal_sym!r} for decimals and "
            f"{group_name} only between groups of digits, e.g. "
            f"{format_money(123450 * 10 ** max(0, digits - 2), code, locale)}."
        )
    whole = number.group("int").replace(group_sym, "")
    frac = number.group("frac") or ""
    if len(frac) > digits:
        raise MoneyError(
            f"{code.upper()} amounts have no decimal places."
            if digits == 0
            else f"{code.upper()} amounts have at most {digits} decimal places."
        )
    significant = (whole + frac.ljust(digits, "0")).lstrip("0")
    if len(significant) > MAX_DIGITS:
        raise MoneyError("That amount is too large.")
    if not significant:
        raise MoneyError("The amount must be more than zero.")
    return int(significant)


def _strip_currency(raw: str, code: str, loc: Locale) -> str:
    """Drop the currency's own symbol (``$``) or code (``USD``) before or after the number.
    Another currency's symbol is left in place, so the number is refused."""
    marks = {code.upper(), get_currency_symbol(code.upper(), loc)}
    for mark in sorted(marks, key=len, reverse=True):
        if raw.upper().startswith(mark.upper()):
            return raw[len(mark) :].strip()
        if raw.upper().endswith(mark.upper()):
            return raw[: -len(mark)].strip()
    return raw
