"""Stripe's documented test cards and what each does when charged.

``data/test-cards.json`` lists Stripe's test cards (number, ``pm_card_…`` ids, brand, outcome,
error and decline codes, 3-D Secure behaviour). A card not in the list but with a valid Luhn
checksum behaves like a plain successful card of its brand, as at Stripe.

:func:`charge_decision` is the single place that decides what happens when a card is charged:
succeed, stop for 3-D Secure, or decline with Stripe's codes and messages.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

_DATA = Path(__file__).with_name("data") / "test-cards.json"

MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "fraudulent": "Your card was declined.",
    "card_velocity_exceeded": "Your card was declined for making repeated attempts too "
    "frequently or exceeding its amount limit.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "incorrect_number": "Your card number is incorrect.",
    "invalid_number": "Your card number is invalid.",
    "invalid_expiry_month": "Your card's expiration month is invalid.",
    "invalid_expiry_year": "Your card's expiration year is invalid.",
    "invalid_cvc": "Your card's security code is invalid.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
    "payment_intent_authentication_failure": "We are unable to authenticate your payment method. "
    "Please choose a different payment method and try "
    "again.",
    "setup_intent_authentication_failure": "We are unable to authenticate your payment method. "
    "Please choose a different payment method and try "
    "again.",
}


@functools.lru_cache(maxsize=1)
def all_cards() -> list[dict]:
    return json.loads(_DATA.read_text(encoding="utf-8"))


@functools.cache
def by_number(number: str) -> dict | None:
    for card in all_cards():
        if card["number"] == number:
            return card
    return None


@functools.cache
def by_token(pm_id: str) -> dict | None:
    """A ``pm_card_…`` test id (or alias) -> its card, with ``pm_card_visa`` style brand ids."""
    for card in all_cards():
        if card["pm_id"] == pm_id or pm_id in card["pm_id_aliases"]:
            return card
    return None


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("34", "37"):
        return "amex"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith(("6011", "65", "644", "645", "646", "647", "648", "649")):
        return "discover"
    if number.startswith(("300", "301", "302", "303", "304", "305", "36", "38", "39")):
        return "diners"
    if number.startswith("35"):
        return "jcb"
    if number.startswith("62"):
        return "unionpay"
    return "unknown"


def cvc_length(brand: str) -> int:
    return 4 if brand == "amex" else 3


@dataclass(frozen=True)
class Decision:
    """What charging a card does: ``succeed``, ``authenticate`` (3-D Secure) or ``decline``."""

    action: str
    code: str | None = None
    decline_code: str | None = None

    @property
    def error_code(self) -> str:
        """The error ``code`` a decline answers with (a decline always has one)."""
        return self.code or "card_declined"

    @property
    def message(self) -> str:
        return MESSAGES.get(self.decline_code or "", MESSAGES.get(self.code or "", "Your card was declined."))


SUCCEED = Decision("succeed")
AUTHENTICATE = Decision("authenticate")


def _decline(card: dict) -> Decision:
    code = card.get("error_code") or "card_declined"
    decline = card.get("decline_code")
    if code == "card_declined" and decline is None:
        decline = "generic_decline"
    return Decision("decline", code, decline)


def charge_decision(card: dict | None, *, off_session: bool, set_up: bool, authenticated: bool) -> Decision:
    """Decide a charge on ``card`` (None: an ordinary card that succeeds).

    ``set_up``: the card was saved with authentication for future use (SetupIntent or
    ``setup_future_usage``); ``authenticated``: the buyer just completed 3-D Secure.
    """
    if card is None:
        return SUCCEED
    outcome, needs_3ds = card["outcome"], card["requires_3ds"]
    if outcome in ("declined", "attach_succeeds_then_charges_declined"):
        return _decline(card) if card.get("error_code") else Decision("decline", "card_declined", "generic_decline")
    if outcome in ("blocked_by_radar_always", "risk_highest_blocked_depending_on_rules"):
        return Decision("decline", "card_declined", "fraudulent")
    if outcome == "cvc_check_fails":
        return Decision("decline", "incorrect_cvc")
    if outcome == "3ds_lookup_processing_error":
        return Decision("decline", "processing_error")
    if outcome == "3ds_processing_error":
        return Decision("decline", "processing_error")
    if needs_3ds is True or outcome == "requires_authentication_every_transaction":
        if outcome == "succeeds_frictionless_3ds":
            return SUCCEED
        if not authenticated:
            if off_session:
                return Decision("decline", "authentication_required", "authentication_required")
            return AUTHENTICATE
        if outcome == "authenticates_then_declined":
            return Decision("decline", "card_declined", card.get("decline_code") or "generic_decline")
        return SUCCEED
    if needs_3ds == "unless_set_up":
        if authenticated or set_up:
            return SUCCEED
        if off_session:
            return Decision("decline", "authentication_required", "authentication_required")
        return AUTHENTICATE
    if needs_3ds == "on_session_only":
        if authenticated or off_session:
            return SUCCEED
        return AUTHENTICATE
    return SUCCEED


def setup_needs_authentication(card: dict | None) -> bool:
    """Saving a card for later: 3-D Secure cards (always or unless set up) ask on setup."""
    if card is None:
        return False
    return (
        card["requires_3ds"] in (True, "unless_set_up", "on_session_only")
        and card["outcome"] != "succeeds_frictionless_3ds"
    )


def tokenization_error(
    number: str, exp_month: int, exp_year: int, cvc: str, now_year: int, now_month: int
) -> tuple[str, str] | None:
    """Errors Stripe gives when raw card details are submitted: ``(code, param)`` or None."""
    if not luhn_ok(number):
        return ("incorrect_number" if number.isdigit() and 12 <= len(number) <= 19 else "invalid_number"), "number"
    if not 1 <= exp_month <= 12:
        return "invalid_expiry_month", "exp_month"
    if exp_year < 100:
        exp_year += 2000
    if exp_year < now_year or (exp_year == now_year and exp_month < now_month) or exp_year > now_year + 50:
        return "invalid_expiry_year", "exp_year"
    if cvc and (not cvc.isdigit() or len(cvc) != cvc_length(brand_of(number))):
        return "invalid_cvc", "cvc"
    return None


# --- added for payment methods / charges (payments engineer) ---------------------------------


def setup_decision(card: dict | None) -> Decision:
    """Saving a card (SetupIntent, after any 3-D Secure): Stripe verifies it with a $0 check.

    Plain declines and fraud blocks fail the setup; ``pm_card_chargeCustomerFail`` (0341) and the
    authenticate-then-decline cards set up fine and only fail when charged later.
    """
    if card is None:
        return SUCCEED
    outcome = card["outcome"]
    if outcome == "declined":
        return _decline(card)
    if outcome in ("blocked_by_radar_always", "risk_highest_blocked_depending_on_rules"):
        return Decision("decline", "card_declined", "fraudulent")
    if outcome in ("3ds_lookup_processing_error", "3ds_processing_error"):
        return Decision("decline", "processing_error")
    return SUCCEED


def card_country(card: dict | None) -> str:
    return "US"


def card_funding(card: dict | None, number: str) -> str:
    if card and card.get("funding"):
        return card["funding"]
    return "credit"


def checks_of(card: dict | None, *, cvc_given: bool = True) -> dict:
    """``card.checks`` as Stripe reports them after a charge or a verification."""
    outcome = (card or {}).get("outcome")
    checks = {
        "address_line1_check": None,
        "address_postal_code_check": None,
        "cvc_check": "pass" if cvc_given else None,
    }
    if outcome == "cvc_check_fails":
        checks["cvc_check"] = "fail"
    elif outcome == "postal_code_check_fails":
        checks.update(address_line1_check="pass", address_postal_code_check="fail")
    elif outcome == "address_line1_check_fails":
        checks.update(address_line1_check="fail", address_postal_code_check="pass")
    elif outcome == "address_checks_fail":
        checks.update(address_line1_check="fail", address_postal_code_check="fail")
    elif outcome == "address_checks_unavailable":
        checks.update(address_line1_check="unavailable", address_postal_code_check="unavailable")
    return checks


def risk_of(card: dict | None) -> tuple[str, int]:
    """(risk_level, risk_score) Radar gives a charge on ``card``."""
    outcome = (card or {}).get("outcome")
    if outcome == "risk_elevated":
        return "elevated", 65
    if outcome in ("blocked_by_radar_always", "risk_highest_blocked_depending_on_rules"):
        return "highest", 95
    return "normal", 20
