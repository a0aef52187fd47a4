"""PaymentMethods: create (cards from the browser, SEPA Direct Debit, ACH Direct Debit
``us_bank_account``), retrieve, update, list, attach, detach; and Stripe's ``pm_card_…`` test
ids, usable wherever a PaymentMethod id is.

The test card behind a card PaymentMethod is kept in ``pm["_sandbox"]`` (private, never shown):
``number`` (to find its test-card behaviour) and ``set_up`` (saved with authentication through a
SetupIntent or ``setup_future_usage``, so cards that need 3-D Secure "unless set up" charge
off-session without it). Bank debits ("delayed methods": SEPA, ACH) keep the test account's
scripted outcome there as ``delayed_outcome``: ``succeeds``, ``disputed`` or the failure code
the debit ends with (:func:`delayed_outcome`).
"""
from __future__ import annotations

import datetime
import hashlib

from .. import cards, errors
from ..api import Context, apply_metadata, endpoint, list_response
from ..primitives import new_id

RAW_CARD_MESSAGE = (
    "Sending credit card numbers directly to the Stripe API is generally unsafe. We suggest you "
    "use test tokens that map to the test card you are using, see https://stripe.com/docs/testing"
    ". To enable raw card data APIs in test mode, see "
    "https://support.stripe.com/questions/enabling-access-to-raw-card-data-apis.")

#: Stripe's SEPA Direct Debit test IBANs -> what a debit from them does
SEPA_IBANS = {
    "AT611904300234573201": "succeeds", "DE89370400440532013000": "succeeds",
    "AT861904300235473202": "fails", "DE62370400440532013001": "fails",
    "DE35370400440532013002": "disputed",
    "AT591904300235473203": "succeeds", "DE08370400440532013003": "succeeds",
}
#: Stripe's ACH Direct Debit test account numbers (routing 110000000) -> the debit's outcome
ACH_TEST_ROUTING_NUMBER = "110000000"
ACH_ACCOUNTS = {
    "000123456789": "succeeds", "000111111116": "no_account", "000111111113": "account_closed",
    "000222222227": "insufficient_funds", "000333333335": "debit_not_authorized",
}
#: payment method types that stay ``processing`` until the bank answers (sandbox clock)
DELAYED_TYPES = ("sepa_debit", "us_bank_account")
_BANK_CODE_LENGTH = {"DE": 8, "AT": 5, "FR": 5, "ES": 4, "NL": 4, "IT": 6, "BE": 3}


def _fingerprint(*parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[int(digest[i:i + 2], 16) % len(alphabet)] for i in range(0, 32, 2))


def _billing_details(given: dict | None) -> dict:
    given = given or {}
    address = given.get("address") or {}
    if address == "":
        address = {}
    return {
        "address": {k: (address.get(k) or None) for k in
                    ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": given.get("email") or None, "name": given.get("name") or None,
        "phone": given.get("phone") or None, "tax_id": given.get("tax_id") or None,
    }


def _base(ctx: Context, pm_type: str, params: dict) -> dict:
    pm = {
        "id": new_id("pm"), "object": "payment_method",
        "allow_redisplay": params.get("allow_redisplay", "unspecified"),
        "billing_details": _billing_details(params.get("billing_details")),
        "created": ctx.now(), "customer": None, "customer_account": None, "livemode": False,
        "metadata": {}, "type": pm_type, "_sandbox": {},
    }
    apply_metadata(pm, params.get("metadata"))
    return pm


def new_card_pm(ctx: Context, number: str, exp_month: int, exp_year: int, *,
                cvc: str | None = None, params: dict | None = None) -> dict:
    """A card PaymentMethod for ``number`` (already validated)."""
    card = cards.by_number(number)
    brand = (card or {}).get("brand") or cards.brand_of(number)
    pm = _base(ctx, "card", params or {})
    pm["card"] = {
        "brand": brand, "checks": {"address_line1_check": None,
                                   "address_postal_code_check": None,
                                   "cvc_check": "unchecked" if cvc else None},
        "country": cards.card_country(card), "display_brand": brand,
        "exp_month": exp_month, "exp_year": exp_year,
        "fingerprint": _fingerprint("card", number), "funding": cards.card_funding(card, number),
        "generated_from": None, "last4": number[-4:],
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
    year = _year(ctx) + 3
    return ctx.store.put(new_card_pm(ctx, card["number"], 12, year, cvc=None))


def _year(ctx: Context) -> int:
    return datetime.datetime.fromtimestamp(ctx.now(), datetime.UTC).year


def resolve(ctx: Context, pm_id: str, *, param: str = "payment_method") -> dict:
    """A PaymentMethod by id, or a fresh one for a test id (``pm_card_visa``)."""
    pm = from_test_id(ctx, pm_id)
    if pm is not None:
        return pm
    obj = ctx.store.get(pm_id) if isinstance(pm_id, str) else None
    if obj is None or obj.get("object") != "payment_method":
        raise errors.no_such("PaymentMethod", pm_id, param)
    return obj


def card_of(pm: dict | None) -> dict | None:
    """The test card behind a card PaymentMethod (None: an ordinary card that succeeds)."""
    if not pm or pm.get("type") != "card":
        return None
    number = (pm.get("_sandbox") or {}).get("number")
    return cards.by_number(number) if number else None


def is_set_up(pm: dict) -> bool:
    return bool((pm.get("_sandbox") or {}).get("set_up"))


def mark_set_up(ctx: Context, pm: dict) -> dict:
    pm.setdefault("_sandbox", {})["set_up"] = True
    if pm.get("type") == "card" and pm["card"]["checks"]["cvc_check"] == "unchecked":
        pm["card"]["checks"]["cvc_check"] = "pass"
    return ctx.store.put(pm)


def is_delayed(pm: dict | None) -> bool:
    """A bank debit: confirming it goes ``processing`` and settles later."""
    return pm is not None and pm.get("type") in DELAYED_TYPES


def delayed_outcome(pm: dict | None) -> str:
    """What a bank debit from ``pm`` does when it settles: ``succeeds``, ``disputed`` (succeeds,
    then the customer disputes it) or the failure code it ends with."""
    sandbox = (pm or {}).get("_sandbox") or {}
    if "delayed_outcome" in sandbox:
        return sandbox["delayed_outcome"]
    legacy = sandbox.get("sepa_outcome", "succeeds")  # states stored before ACH existed
    return "insufficient_funds" if legacy == "fails" else legacy


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
        raise errors.card_error(cards.MESSAGES[code], code=code,
                                param=f"{param_prefix}[{field}]")
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
        raise errors.invalid_request("The provided IBAN is invalid.", param="sepa_debit[iban]",
                                     code="invalid_bank_account_iban")
    billing = params.get("billing_details") or {}
    if not billing.get("name"):
        raise errors.missing_param("billing_details[name]")
    if not billing.get("email"):
        raise errors.missing_param("billing_details[email]")
    country = iban[:2]
    bank_len = _BANK_CODE_LENGTH.get(country, 5)
    pm = _base(ctx, "sepa_debit", params)
    pm["sepa_debit"] = {
        "bank_code": iban[4:4 + bank_len], "branch_code": "", "country": country,
        "fingerprint": _fingerprint("iban", iban),
        "generated_from": {"charge": None, "setup_attempt": None}, "last4": iban[-4:],
    }
    outcome = SEPA_IBANS.get(iban, "succeeds")
    pm["_sandbox"] = {"delayed_outcome": "insufficient_funds" if outcome == "fails" else outcome,
                      "set_up": False}
    return pm


def _routing_ok(routing: str) -> bool:
    """An ABA routing number: 9 digits with the 3-7-1 checksum."""
    if len(routing) != 9 or not routing.isdigit():
        return False
    digits = [int(c) for c in routing]
    weights = (3, 7, 1) * 3
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


def new_us_bank_account_pm(ctx: Context, params: dict, *,
                           param_prefix: str = "us_bank_account") -> dict:
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
            code="parameter_unsupported")
    routing = str(given.get("routing_number") or "").strip()
    account = str(given.get("account_number") or "").strip()
    if not routing:
        raise errors.missing_param(f"{param_prefix}[routing_number]")
    if not account:
        raise errors.missing_param(f"{param_prefix}[account_number]")
    if not _routing_ok(routing):
        raise errors.invalid_request("Routing number must have 9 digits and be a valid ABA "
                                     "routing number.", param=f"{param_prefix}[routing_number]",
                                     code="routing_number_invalid")
    if not account.isdigit() or not 4 <= len(account) <= 17:
        raise errors.invalid_request("The bank account number must be 4 to 17 digits.",
                                     param=f"{param_prefix}[account_number]",
                                     code="account_number_invalid")
    billing = params.get("billing_details") or {}
    if not billing.get("name"):
        raise errors.invalid_request(
            "Missing required param: billing_details[name]. Name is required for "
            "us_bank_account PaymentMethods.", param="billing_details[name]",
            code="parameter_missing")
    pm = _base(ctx, "us_bank_account", params)
    pm["us_bank_account"] = {
        "account_holder_type": given.get("account_holder_type") or "individual",
        "account_type": given.get("account_type") or "checking",
        "bank_name": "STRIPE TEST BANK" if routing == ACH_TEST_ROUTING_NUMBER else None,
        "financial_connections_account": None,
        "fingerprint": _fingerprint("ach", routing, account), "last4": account[-4:],
        "networks": {"preferred": "ach", "supported": ["ach"]},
        "routing_number": routing, "status_details": {},
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
            param=f"{param}[type]", code="parameter_unsupported")
    return ctx.store.put(pm)


# --- internal API ------------------------------------------------------------------------------

def attach_to_customer(ctx: Context, pm_id: str, customer_id: str) -> dict:
    """Attach (a test id creates a fresh PaymentMethod first, as Stripe does)."""
    pm = resolve(ctx, pm_id)
    customer = ctx.load(customer_id, "customer", param="customer")
    if pm.get("customer") == customer["id"]:
        return pm
    if pm.get("customer"):
        raise errors.invalid_request(
            "The payment method you provided has already been attached to a customer.",
            param="payment_method", code="payment_method_unexpected_state")
    if pm.get("_sandbox", {}).get("used_once"):
        raise errors.invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or was "
            "detached from a Customer, and may not be used again.", param="payment_method",
            code="payment_method_unexpected_state")
    if pm["type"] == "card":
        decision = cards.setup_decision(card_of(pm))
        if decision.action == "decline":  # Stripe verifies the card when it is attached
            raise errors.card_error(decision.message, code=decision.error_code,
                                    decline_code=decision.decline_code)
        if pm["card"]["checks"]["cvc_check"] == "unchecked":
            pm["card"]["checks"]["cvc_check"] = "pass"
    pm["customer"] = customer["id"]
    ctx.store.put(pm)
    ctx.emit("payment_method.attached", pm)
    return pm


def detach(ctx: Context, pm: dict) -> dict:
    customer_id = pm.get("customer")
    if not customer_id:
        raise errors.invalid_request("The payment method you provided is not attached to a "
                                     "customer so detachment is impossible.",
                                     param="payment_method",
                                     code="payment_method_unexpected_state")
    previous = {"customer": customer_id}
    pm["customer"] = None
    pm.setdefault("_sandbox", {})["used_once"] = True
    ctx.store.put(pm)
    customer = ctx.store.get(customer_id)
    if customer and not customer.get("deleted") and \
            customer["invoice_settings"].get("default_payment_method") == pm["id"]:
        before = dict(customer["invoice_settings"])
        customer["invoice_settings"]["default_payment_method"] = None
        ctx.store.put(customer)
        ctx.emit("customer.updated", customer, {"invoice_settings": before})
    ctx.emit("payment_method.detached", pm, previous)
    return pm


# --- endpoints ---------------------------------------------------------------------------------

@endpoint("POST", "/v1/payment_methods", params="PaymentMethodCreateParams", publishable=True,
          supported=["type", "card[number]", "card[exp_month]", "card[exp_year]", "card[cvc]",
                     "card[token]", "sepa_debit[iban]", "us_bank_account[routing_number]",
                     "us_bank_account[account_number]", "us_bank_account[account_holder_type]",
                     "us_bank_account[account_type]", "billing_details", "metadata",
                     "allow_redisplay"])
def create_payment_method(ctx: Context, params: dict) -> dict:
    pm_type = params.get("type")
    if pm_type is None:
        raise errors.missing_param("type")
    if pm_type == "card":
        card = params.get("card")
        if not card:
            raise errors.missing_param("card")
        if "token" in card:
            pm = from_test_id(ctx, card["token"])
            if pm is None:
                raise errors.no_such("token", card["token"], "card[token]")
            apply_metadata(pm, params.get("metadata"))
            pm["billing_details"] = _billing_details(params.get("billing_details"))
        else:
            pm = card_from_raw(ctx, card, params)
    elif pm_type == "sepa_debit":
        pm = new_sepa_pm(ctx, params)
    elif pm_type == "us_bank_account":
        pm = new_us_bank_account_pm(ctx, params)
    else:
        raise errors.invalid_request(
            f"The payment method type {pm_type} is valid at Stripe but not supported by the "
            "sandbox (card, sepa_debit and us_bank_account are).", param="type",
            code="parameter_unsupported")
    return ctx.store.put(pm)


@endpoint("GET", "/v1/payment_methods/<pm_id>", params="PaymentMethodRetrieveParams")
def retrieve_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    return resolve(ctx, pm_id, param="id")


@endpoint("POST", "/v1/payment_methods/<pm_id>", params="PaymentMethodUpdateParams",
          supported=["billing_details", "metadata", "card[exp_month]", "card[exp_year]",
                     "allow_redisplay"])
def update_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    pm = ctx.load(pm_id, "payment_method", label="PaymentMethod")
    previous: dict = {}
    if "billing_details" in params:
        previous["billing_details"] = pm["billing_details"]
        merged = dict(pm["billing_details"])
        given = params["billing_details"] or {}
        for key in ("email", "name", "phone", "tax_id"):
            if key in given:
                merged[key] = given[key] or None
        if "address" in given:
            address = dict(merged["address"] or {})
            for key, value in (given["address"] or {}).items():
                address[key] = value or None
            merged["address"] = address
        pm["billing_details"] = merged
    if "card" in params:
        if pm["type"] != "card":
            raise errors.invalid_request("You cannot update card details on a PaymentMethod of "
                                         f"type {pm['type']}.", param="card")
        card = params["card"]
        previous["card"] = dict(pm["card"])
        if "exp_month" in card:
            if not 1 <= card["exp_month"] <= 12:
                raise errors.card_error(cards.MESSAGES["invalid_expiry_month"],
                                        code="invalid_expiry_month", param="card[exp_month]")
            pm["card"]["exp_month"] = card["exp_month"]
        if "exp_year" in card:
            year = card["exp_year"] + 2000 if card["exp_year"] < 100 else card["exp_year"]
            if year < _year(ctx):
                raise errors.card_error(cards.MESSAGES["invalid_expiry_year"],
                                        code="invalid_expiry_year", param="card[exp_year]")
            pm["card"]["exp_year"] = year
    if "allow_redisplay" in params:
        previous["allow_redisplay"] = pm["allow_redisplay"]
        pm["allow_redisplay"] = params["allow_redisplay"]
    if "metadata" in params:
        previous["metadata"] = dict(pm["metadata"])
        apply_metadata(pm, params["metadata"])
    ctx.store.put(pm)
    if pm.get("customer"):
        ctx.emit("payment_method.updated", pm, previous)
    return pm


def _listing(ctx: Context, customer_id: str | None, params: dict, url: str) -> dict:
    pms = ctx.store.all("payment_method")
    if customer_id is not None:
        pms = [p for p in pms if p.get("customer") == customer_id]
    if params.get("type"):
        pms = [p for p in pms if p["type"] == params["type"]]
    if params.get("allow_redisplay"):
        pms = [p for p in pms if p["allow_redisplay"] == params["allow_redisplay"]]
    return list_response(pms, url, params)


@endpoint("GET", "/v1/payment_methods", params="PaymentMethodListParams",
          supported=["customer", "type", "limit", "starting_after", "ending_before",
                     "allow_redisplay"])
def list_payment_methods(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    customer_id = params.get("customer")
    if customer_id:
        ctx.load(customer_id, "customer", param="customer")
    return _listing(ctx, customer_id, params, "/v1/payment_methods")


@endpoint("GET", "/v1/customers/<customer_id>/payment_methods",
          params="CustomerPaymentMethodListParams",
          supported=["type", "limit", "starting_after", "ending_before", "allow_redisplay"])
def list_customer_payment_methods(ctx: Context, params: dict, customer_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(customer_id, "customer")
    return _listing(ctx, customer_id, params, f"/v1/customers/{customer_id}/payment_methods")


@endpoint("GET", "/v1/customers/<customer_id>/payment_methods/<pm_id>",
          params="CustomerPaymentMethodRetrieveParams")
def retrieve_customer_payment_method(ctx: Context, params: dict, customer_id: str,
                                     pm_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(customer_id, "customer")
    pm = ctx.load(pm_id, "payment_method", label="PaymentMethod")
    if pm.get("customer") != customer_id:
        raise errors.no_such("PaymentMethod", pm_id)
    return pm


@endpoint("POST", "/v1/payment_methods/<pm_id>/attach", params="PaymentMethodAttachParams",
          supported=["customer"])
def attach_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    if not params.get("customer"):
        raise errors.missing_param("customer")
    return attach_to_customer(ctx, pm_id, params["customer"])


@endpoint("POST", "/v1/payment_methods/<pm_id>/detach", params="PaymentMethodDetachParams")
def detach_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    return detach(ctx, ctx.load(pm_id, "payment_method", label="PaymentMethod"))
