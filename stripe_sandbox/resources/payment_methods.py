"""PaymentMethods: create (cards from the browser, SEPA Direct Debit, ACH Direct Debit
``us_bank_account``), retrieve, update, list, attach, detach; and Stripe's ``pm_card_…`` test
ids, usable wherever a PaymentMethod id is.

The test card behind a card PaymentMethod is kept in ``pm["_sandbox"]`` (private, never shown):
``number`` (to find its test-card behaviour) and ``set_up`` (saved with authentication through a
SetupIntent or ``setup_future_usage``, so cards that need 3-D Secure "unless set up" charge
off-session without it). Bank debits ("delayed methods": SEPA, ACH) keep the test account's
scripted outcome there as ``delayed_outcome``: ``succeeds``, ``disputed`` or the failure code
the debit ends with (:func:`delayed_outcome`). How a PaymentMethod is built from card or bank
details is in :mod:`.payment_method_data`.
"""

from __future__ import annotations

from .. import cards, errors
from ..api import Context, apply_metadata, endpoint, list_response
from .payment_method_data import (
    billing_details,
    card_from_raw,
    from_test_id,
    new_sepa_pm,
    new_us_bank_account_pm,
    year_of,
)

#: payment method types that stay ``processing`` until the bank answers (sandbox clock)
DELAYED_TYPES = ("sepa_debit", "us_bank_account")


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
            param="payment_method",
            code="payment_method_unexpected_state",
        )
    if pm.get("_sandbox", {}).get("used_once"):
        raise errors.invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or was "
            "detached from a Customer, and may not be used again.",
            param="payment_method",
            code="payment_method_unexpected_state",
        )
    if pm["type"] == "card":
        decision = cards.setup_decision(card_of(pm))
        if decision.action == "decline":  # Stripe verifies the card when it is attached
            raise errors.card_error(decision.message, code=decision.error_code, decline_code=decision.decline_code)
        if pm["card"]["checks"]["cvc_check"] == "unchecked":
            pm["card"]["checks"]["cvc_check"] = "pass"
    pm["customer"] = customer["id"]
    ctx.store.put(pm)
    ctx.emit("payment_method.attached", pm)
    return pm


def detach(ctx: Context, pm: dict) -> dict:
    customer_id = pm.get("customer")
    if not customer_id:
        raise errors.invalid_request(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            param="payment_method",
            code="payment_method_unexpected_state",
        )
    previous = {"customer": customer_id}
    pm["customer"] = None
    pm.setdefault("_sandbox", {})["used_once"] = True
    ctx.store.put(pm)
    customer = ctx.store.get(customer_id)
    if (
        customer
        and not customer.get("deleted")
        and customer["invoice_settings"].get("default_payment_method") == pm["id"]
    ):
        before = dict(customer["invoice_settings"])
        customer["invoice_settings"]["default_payment_method"] = None
        ctx.store.put(customer)
        ctx.emit("customer.updated", customer, {"invoice_settings": before})
    ctx.emit("payment_method.detached", pm, previous)
    return pm


# --- endpoints ---------------------------------------------------------------------------------


@endpoint(
    "POST",
    "/v1/payment_methods",
    params="PaymentMethodCreateParams",
    publishable=True,
    supported=[
        "type",
        "card[number]",
        "card[exp_month]",
        "card[exp_year]",
        "card[cvc]",
        "card[token]",
        "sepa_debit[iban]",
        "us_bank_account[routing_number]",
        "us_bank_account[account_number]",
        "us_bank_account[account_holder_type]",
        "us_bank_account[account_type]",
        "billing_details",
        "metadata",
        "allow_redisplay",
    ],
)
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
            pm["billing_details"] = billing_details(params.get("billing_details"))
        else:
            pm = card_from_raw(ctx, card, params)
    elif pm_type == "sepa_debit":
        pm = new_sepa_pm(ctx, params)
    elif pm_type == "us_bank_account":
        pm = new_us_bank_account_pm(ctx, params)
    else:
        raise errors.invalid_request(
            f"The payment method type {pm_type} is valid at Stripe but not supported by the "
            "sandbox (card, sepa_debit and us_bank_account are).",
            param="type",
            code="parameter_unsupported",
        )
    return ctx.store.put(pm)


@endpoint("GET", "/v1/payment_methods/<pm_id>", params="PaymentMethodRetrieveParams")
def retrieve_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    return resolve(ctx, pm_id, param="id")


@endpoint(
    "POST",
    "/v1/payment_methods/<pm_id>",
    params="PaymentMethodUpdateParams",
    supported=["billing_details", "metadata", "card[exp_month]", "card[exp_year]", "allow_redisplay"],
)
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
            raise errors.invalid_request(
                f"You cannot update card details on a PaymentMethod of type {pm['type']}.", param="card"
            )
        card = params["card"]
        previous["card"] = dict(pm["card"])
        if "exp_month" in card:
            if not 1 <= card["exp_month"] <= 12:
                raise errors.card_error(
                    cards.MESSAGES["invalid_expiry_month"], code="invalid_expiry_month", param="card[exp_month]"
                )
            pm["card"]["exp_month"] = card["exp_month"]
        if "exp_year" in card:
            year = card["exp_year"] + 2000 if card["exp_year"] < 100 else card["exp_year"]
            if year < year_of(ctx):
                raise errors.card_error(
                    cards.MESSAGES["invalid_expiry_year"], code="invalid_expiry_year", param="card[exp_year]"
                )
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


@endpoint(
    "GET",
    "/v1/payment_methods",
    params="PaymentMethodListParams",
    supported=["customer", "type", "limit", "starting_after", "ending_before", "allow_redisplay"],
)
def list_payment_methods(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    customer_id = params.get("customer")
    if customer_id:
        ctx.load(customer_id, "customer", param="customer")
    return _listing(ctx, customer_id, params, "/v1/payment_methods")


@endpoint(
    "GET",
    "/v1/customers/<customer_id>/payment_methods",
    params="CustomerPaymentMethodListParams",
    supported=["type", "limit", "starting_after", "ending_before", "allow_redisplay"],
)
def list_customer_payment_methods(ctx: Context, params: dict, customer_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(customer_id, "customer")
    return _listing(ctx, customer_id, params, f"/v1/customers/{customer_id}/payment_methods")


@endpoint("GET", "/v1/customers/<customer_id>/payment_methods/<pm_id>", params="CustomerPaymentMethodRetrieveParams")
def retrieve_customer_payment_method(ctx: Context, params: dict, customer_id: str, pm_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(customer_id, "customer")
    pm = ctx.load(pm_id, "payment_method", label="PaymentMethod")
    if pm.get("customer") != customer_id:
        raise errors.no_such("PaymentMethod", pm_id)
    return pm


@endpoint("POST", "/v1/payment_methods/<pm_id>/attach", params="PaymentMethodAttachParams", supported=["customer"])
def attach_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    if not params.get("customer"):
        raise errors.missing_param("customer")
    return attach_to_customer(ctx, pm_id, params["customer"])


@endpoint("POST", "/v1/payment_methods/<pm_id>/detach", params="PaymentMethodDetachParams")
def detach_payment_method(ctx: Context, params: dict, pm_id: str) -> dict:
    ctx.require_secret_key()
    return detach(ctx, ctx.load(pm_id, "payment_method", label="PaymentMethod"))
