"""Building PaymentMethods from their details: cards (from a ``pm_card_…`` test id, or raw
numbers from Stripe.js with a publishable key), SEPA IBANs and ACH account/routing numbers,
with their fingerprints; and ``payment_method_data`` on a confirm (:func:`create_from_data`).

The test card behind a card PaymentMethod is kept in ``pm["_sandbox"]`` (``number``, ``cvc``,
``set_up``); a bank debit's scripted outcome as ``delayed_outcome`` (see :mod:`.payment_methods`).
"""

from __future__ import annotations

import datetime
import hashlib

from .. import cards, errors
from ..api import Context, apply_metadata
from ..primitives import new_id

RAW_CARD_MESSAGE = (
    "Sending credit card numbers directly to the Stripe API is generally unsafe. We suggest you "
    "use test tokens that map to the test card you are using, see https://stripe.com/docs/testing"
    ". To enable raw card data APIs in test mode, see "
    "https://support.stripe.com/questions/enabling-access-to-raw-card-data-apis."
)

#: Stripe's SEPA Direct Debit test IBANs -> what a debit from them does
SEPA_IBANS = {
    "AT611904300234573201": "succeeds",
    "DE89370400440532013000": "succeeds",
    "AT861904300235473202": "fails",
    "DE62370400440532013001": "fails",
    "DE35370400440532013002": "disputed",
    "AT591904300235473203": "succeeds",
    "DE08370400440532013003": "succeeds",
}
#: Stripe's ACH Direct Debit test account numbers (routing 110000000) -> the debit's outcome
ACH_TEST_ROUTING_NUMBER = "110000000"
ACH_ACCOUNTS = {
    "000123456789": "succeeds",
    "000111111116": "no_account",
    "000111111113": "account_closed",
    "000222222227": "insufficient_funds",
    "000333333335": "debit_not_authorized",
}
_BANK_CODE_LENGTH = {"DE": 8, "AT": 5, "FR": 5, "ES": 4, "NL": 4, "IT": 6, "BE": 3}


def _fingerprint(*parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 32, 2))


def billing_details(given: dict | None) -> dict:
    given = given or {}
    address = given.get("address") or {}
    if address == "":
        address = {}
    return {
        "address": {k: (address.get(k) or None) for k in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": given.get("email") or None,
        "name": given.get("name") or None,
        "phone": given.get("phone") or None,
        "tax_id": given.get("tax_id") or None,
    }


def _base(ctx: Context, pm_type: str, params: dict) -> dict:
    pm = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": params.get("allow_redisplay", "unspecified"),
        "billing_details": billing_details(params.get("billing_details")),
        "created": ctx.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": pm_type,
        "_sandbox": {},
    }
    apply_metadata(pm, params.get("metadata"))
    return pm


def new_card_pm(
    ctx: Context, number: str, exp_month: int, exp_year: int, *, cvc: str | None = None, params: dict | None = None
) -> dict:
    """A card PaymentMethod for ``number`` (already validated)."""
    card = cards.by_number(number)
    brand = (card or {}).get("brand") or cards.brand_of(number)
    pm = _base(ctx, "card", params or {})
    pm["card"] = {
        "brand": brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "unchecked" if cvc else None,
        },
        "country": cards.card_country(card),
        "display_brand": brand,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": _fingerprint("card", number),
        "funding": cards.card_funding(card, number),
        "generated_from": None,
        "last4": number[-4:],
        "networks": {"available": [brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": (card or {}).get("requires_3ds") != "not_supported"},
        "wallet": None,
    }
    pm["_sandbox"] = {"number": number, "cvc": bool(cvc), "set_up": False}
    return pm


def from_test_id(ctx: Context, pm_id: str) -> dict | None:
    """A fresh PaymentMethod for a ``pm_card_…`` test id (None when it is not one)."""
    card = cards.by_token(pm_id) if isinstance(pm_id, str) else None
    if card is None:
        return None
    year = year_of(ctx) + 3
    return ctx.store.put(new_card_pm(ctx, card["number"], 12, year, cvc=None))


def year_of(ctx: Context) -> int:
    return datetime.datetime.fromtimestamp(ctx.now(), datetime.UTC).year


# --- raw card details (publishable key only) --------------------------------------------------


def card_from_raw(ctx: Context, raw: dict, params: dict, *, param_prefix: str = "card") -> dict:
    """Tokenize ``card[number|exp_month|exp_year|cvc]`` as Stripe.js does (publishable key)."""
    if ctx.key_kind != "publishable":
        raise errors.invalid_request(RAW_CARD_MESSAGE)
    for key in ("number", "exp_month", "exp_year"):
        if key not in raw:
            raise errors.missing_param(f"{param_prefix}[{key}]")
    number = str(raw["number"]).replace(" ", "")
    cvc = str(raw.get("cvc") or "")
    exp_month, exp_year = int(raw["exp_month"]), int(raw["exp_year"])
    if exp_year < 100:
        exp_year += 2000
    today = datetime.datetime.fromtimestamp(ctx.now(), datetime.UTC)
    problem = cards.tokenization_error(number, exp_month, exp_year, cvc, today.year, today.month)
    if problem:
        code, field = problem
        raise errors.card_error(cards.MESSAGES[code], code=code, param=f"{param_prefix}[{field}]")
    return new_card_pm(ctx, number, exp_month, exp_year, cvc=cvc or None, params=params)


def _iban_ok(iban: str) -> bool:
    if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in moved)
    return digits.isdigit() and int(digits) % 97 == 1


def new_sepa_pm(ctx: Context, params: dict) -> dict:
    iban = str((params.get("sepa_debit") or {}).get("iban") or "").replace(" ", "").upper()
    if not iban:
        raise errors.missing_param("sepa_debit[iban]")
    if not _iban_ok(iban):
        raise errors.invalid_request(
            "The provided IBAN is invalid.", param="sepa_debit[iban]", code="invalid_bank_account_iban"
        )
    billing = params.get("billing_details") or {}
    if not billing.get("name"):
        raise errors.missing_param("billing_details[name]")
    if not billing.get("email"):
        raise errors.missing_param("billing_details[email]")
    country = iban[:2]
    bank_len = _BANK_CODE_LENGTH.get(country, 5)
    pm = _base(ctx, "sepa_debit", params)
    pm["sepa_debit"] = {
        "bank_code": iban[4 : 4 + bank_len],
        "branch_code": "",
        "country": country,
        "fingerprint": _fingerprint("iban", iban),
        "generated_from": {"charge": None, "setup_attempt": None},
        "last4": iban[-4:],
    }
    outcome = SEPA_IBANS.get(iban, "succeeds")
    pm["_sandbox"] = {"delayed_outcome": "insufficient_funds" if outcome == "fails" else outcome, "set_up": False}
    return pm


def _routing_ok(routing: str) -> bool:
    """An ABA routing number: 9 digits with the 3-7-1 checksum."""
    if len(routing) != 9 or not routing.isdigit():
        return False
    digits = [int(c) for c in routing]
    weights = (3, 7, 1) * 3
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


def new_us_bank_account_pm(ctx: Context, params: dict, *, param_prefix: str = "us_bank_account") -> dict:
    """ACH Direct Debit from account and routing numbers (Stripe.js' manual entry, or a
    secret key). The sandbox treats Stripe's test accounts as verified: no micro-deposits."""
    given = params.get("us_bank_account") or {}
    if not given:
        raise errors.missing_param(param_prefix)
    if given.get("financial_connections_account"):
        raise errors.invalid_request(
            "Financial Connections accounts are valid at Stripe but not supported by the "
            "sandbox; send routing_number and account_number.",
            param=f"{param_prefix}[financial_connections_account]",
            code="parameter_unsupported",
        )
    routing = str(given.get("routing_number") or "").strip()
    account = str(given.get("account_number") or "").strip()
    if not routing:
        raise errors.missing_param(f"{param_prefix}[routing_number]")
    if not account:
        raise errors.missing_param(f"{param_prefix}[account_number]")
    if not _routing_ok(routing):
        raise errors.invalid_request(
            "Routing number must have 9 digits and be a valid ABA routing number.",
            param=f"{param_prefix}[routing_number]",
            code="routing_number_invalid",
        )
    if not account.isdigit() or not 4 <= len(account) <= 17:
        raise errors.invalid_request(
            "The bank account number must be 4 to 17 digits.",
            param=f"{param_prefix}[account_number]",
            code="account_number_invalid",
        )
    billing = params.get("billing_details") or {}
    if not billing.get("name"):
        raise errors.invalid_request(
            "Missing required param: billing_details[name]. Name is required for us_bank_account PaymentMethods.",
            param="billing_details[name]",
            code="parameter_missing",
        )
    pm = _base(ctx, "us_bank_account", params)
    pm["us_bank_account"] = {
        "account_holder_type": given.get("account_holder_type") or "individual",
        "account_type": given.get("account_type") or "checking",
        "bank_name": "STRIPE TEST BANK" if routing == ACH_TEST_ROUTING_NUMBER else None,
        "financial_connections_account": None,
        "fingerprint": _fingerprint("ach", routing, account),
        "last4": account[-4:],
        "networks": {"preferred": "ach", "supported": ["ach"]},
        "routing_number": routing,
        "status_details": {},
    }
    pm["_sandbox"] = {"delayed_outcome": ACH_ACCOUNTS.get(account, "succeeds"), "set_up": False}
    return pm


def create_from_data(ctx: Context, data: dict, *, param: str = "payment_method_data") -> dict:
    """``payment_method_data`` on a confirm: create the PaymentMethod inline (not stored twice)."""
    pm_type = data.get("type")
    if pm_type == "card":
        card = data.get("card") or {}
        if "token" in card:
            found = from_test_id(ctx, card["token"])
            if found is None:
                raise errors.no_such("token", card["token"], f"{param}[card][token]")
            return found
        pm = card_from_raw(ctx, card, data, param_prefix=f"{param}[card]")
    elif pm_type == "sepa_debit":
        pm = new_sepa_pm(ctx, data)
    elif pm_type == "us_bank_account":
        pm = new_us_bank_account_pm(ctx, data, param_prefix=f"{param}[us_bank_account]")
    elif pm_type is None:
        raise errors.missing_param(f"{param}[type]")
    else:
        raise errors.invalid_request(
            f"The payment method type {pm_type} is not supported by the sandbox.",
            param=f"{param}[type]",
            code="parameter_unsupported",
        )
    return ctx.store.put(pm)
