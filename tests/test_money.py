"""storefront.money: exact formatting and parsing of money, over currencies with 0, 2 and 3
decimals (property tests with Hypothesis), and every refusal with its message."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storefront.money import (
    MAX_DIGITS,
    MoneyError,
    format_money,
    format_or_raw,
    format_plain,
    minor_digits,
    parse_money,
    to_decimal,
)

ZERO = ["jpy", "krw", "clp", "vnd", "ugx"]
TWO = ["usd", "eur", "gbp", "cad", "aud", "chf", "sek", "inr", "isk", "huf"]
THREE = ["kwd", "bhd", "jod", "omr", "tnd"]
CURRENCIES = ZERO + TWO + THREE
AMOUNTS = st.integers(min_value=1, max_value=10**MAX_DIGITS - 1)


def test_digits_follow_stripe():
    assert [minor_digits(c) for c in ("jpy", "usd", "kwd", "isk", "ugx")] == [0, 2, 3, 2, 0]


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        (123450, "usd", "$1,234.50"),
        (5, "usd", "$0.05"),
        (-150, "usd", "-$1.50"),
        (1200, "eur", "€12.00"),
        (500, "jpy", "¥500"),
        (1999, "chf", "19.99 CHF"),
        (1500, "kwd", "1.500 KWD"),
        (1234567, "bhd", "1,234.567 BHD"),
        (100, "gbp", "£1.00"),
    ],
)
def test_format_money(amount, currency, expected):
    assert format_money(amount, currency) == expected


def test_format_or_raw_shows_whatever_it_is_given():
    """What pages and ledger notes use: a missing amount is blank, and an amount with a currency
    that is not one (bad data) shows raw instead of failing the page."""
    assert format_or_raw(123450, "usd") == format_money(123450, "usd") == "$1,234.50"
    assert format_or_raw(1999, "CHF") == "19.99 CHF"
    assert format_or_raw(1999, None) == "$19.99"
    assert format_or_raw(None, "usd") == ""
    assert format_or_raw(1999, "bitcoin") == "1999 BITCOIN"
    assert format_or_raw(1500, "kwd", "de") == format_money(1500, "kwd", "de")


@settings(max_examples=300, deadline=None)
@given(amount=AMOUNTS, currency=st.sampled_from(CURRENCIES))
@example(amount=1, currency="kwd")
@example(amount=10**MAX_DIGITS - 1, currency="jpy")
def test_format_then_parse_round_trips(amount, currency):
    assert parse_money(format_money(amount, currency), currency) == amount
    assert parse_money(format_plain(amount, currency), currency) == amount
    assert to_decimal(amount, currency) == Decimal(amount).scaleb(-minor_digits(currency))


@settings(max_examples=100, deadline=None)
@given(
    amount=AMOUNTS,
    currency=st.sampled_from(["eur", "usd", "kwd", "jpy"]),
    locale=st.sampled_from(["de", "fr", "en_IN"]),
)
def test_other_locales_round_trip_by_their_own_rules(amount, currency, locale):
    assert parse_money(format_money(amount, currency, locale), currency, locale) == amount


@settings(max_examples=200, deadline=None)
@given(amount=AMOUNTS, currency=st.sampled_from(TWO + THREE))
def test_one_decimal_too_many_is_refused(amount, currency):
    with pytest.raises(MoneyError, match="at most"):
        parse_money(format_plain(amount, currency) + "1", currency)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30), currency=st.sampled_from(CURRENCIES))
def test_any_text_is_an_exact_amount_or_a_clear_refusal(text, currency):
    try:
        value = parse_money(text, currency)
    except MoneyError as err:
        assert err.message and len(err.message) < 200
    else:
        assert isinstance(value, int) and 0 < value < 10**MAX_DIGITS
        plain = format_plain(value, currency)
        digits_in = "".join(ch for ch in text if ch in "0123456789").lstrip("0")
        assert plain.replace(".", "").lstrip("0").rstrip("0") == digits_in.rstrip("0")


@pytest.mark.parametrize(
    "text,currency,expected",
    [
        ("12.50", "usd", 1250),
        ("12.5", "usd", 1250),
        ("12", "usd", 1200),
        ("$12.50", "usd", 1250),
        ("1,234.50", "usd", 123450),
        ("1,000", "usd", 100000),
        ("12.50 USD", "usd", 1250),
        ("usd 3", "usd", 300),
        ("0.01", "usd", 1),
        ("500", "jpy", 500),
        ("¥1,500", "jpy", 1500),
        ("1.5", "kwd", 1500),
        ("0.001", "kwd", 1),
        (" 7 ", "eur", 700),
    ],
)
def test_parse_money(text, currency, expected):
    assert parse_money(text, currency) == expected


@pytest.mark.parametrize(
    "text,currency,message",
    [
        ("1,50", "usd", "for certain"),  # a comma decimal: refused, never 150.00
        ("1,5", "usd", "for certain"),
        ("12,345,67", "usd", "for certain"),
        ("1,2345", "usd", "for certain"),
        ("1_000", "usd", "'_'"),
        ("١", "usd", "digits 0-9"),
        ("١٢.٥٠", "usd", "digits 0-9"),
        ("１２", "usd", "digits 0-9"),
        ("1e3", "jpy", "exponent"),
        ("1E-2", "usd", "exponent"),
        ("NaN", "usd", "as a number"),
        ("Infinity", "usd", "as a number"),
        ("inf", "usd", "as a number"),
        ("1.001", "usd", "at most 2"),
        ("1.5", "jpy", "no decimal"),
        ("0.0001", "kwd", "at most 3"),
        ("-1", "usd", "more than zero"),
        ("-$1", "usd", "more than zero"),
        ("$-1", "usd", "more than zero"),
        ("0", "usd", "more than zero"),
        ("0.00", "usd", "more than zero"),
        ("9" * 16, "jpy", "too large"),
        ("9" * 14, "usd", "too large"),
        ("9" * 5000, "usd", "too long"),
        ("", "usd", "Type an amount"),
        ("   ", "usd", "Type an amount"),
        (None, "usd", "Type an amount"),
        ("€5", "usd", "in USD"),
        ("12.", "usd", "for certain"),
        (".5", "usd", "for certain"),
        ("1 000", "usd", "for certain"),
        ("12.5.0", "usd", "for certain"),
        ("+5", "usd", "as a number"),
        ("bad-١", "usd", "as a number"),
    ],
)
def test_parse_money_refuses(text, currency, message):
    with pytest.raises(MoneyError, match=message) as caught:
        parse_money(text, currency)
    assert caught.value.message


def test_a_locale_decides_what_a_comma_means():
    assert parse_money("1,50", "eur", "de") == 150
    assert parse_money("1.234,50", "eur", "de") == 123450
    with pytest.raises(MoneyError):
        parse_money("1.50", "eur", "de")  # in German that is a group separator misplaced


def test_an_unknown_currency_is_refused():
    for bad in ("", "us", "usdx", "12$"):
        with pytest.raises(MoneyError):
            parse_money("1", bad)
