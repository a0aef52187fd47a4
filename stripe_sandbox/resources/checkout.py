"""Checkout Sessions: create (payment / subscription / setup), retrieve, list, expire, line items.

The hosted page and ``POST /_sandbox/checkout/<id>/pay`` complete a session through
:func:`.checkout_completion.complete_session`, which also follows the payment afterwards.
"""

from __future__ import annotations

import copy

from .. import errors
from ..api import LIST_PARAMS, Context, apply_metadata, endpoint, list_endpoint, list_response, retrieve_endpoint
from ..expand import includable
from ..jobs import job
from ..primitives import new_id
from . import payment_intents
from .billing import inline_price, load_price_param, product_name
from .price_currencies import in_currency, lock_customer_currency, requested_currency

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 3600

_CREATE = [
    "mode",
    "line_items[][price]",
    "line_items[][quantity]",
    "line_items[][price_data][currency]",
    "line_items[][price_data][unit_amount]",
    "line_items[][price_data][product]",
    "line_items[][price_data][product_data][name]",
    "line_items[][price_data][product_data][description]",
    "line_items[][price_data][product_data][metadata]",
    "line_items[][price_data][recurring]",
    "customer",
    "customer_email",
    "client_reference_id",
    "metadata",
    "payment_intent_data[metadata]",
    "payment_intent_data[setup_future_usage]",
    "payment_intent_data[description]",
    "subscription_data[metadata]",
    "subscription_data[description]",
    "success_url",
    "cancel_url",
    "expires_at",
    "allowed_payment_method_types",
    "currency",
    "locale",
    "customer_creation",
    "ui_mode",
]


def _fail(message: str, param: str | None = None) -> errors.StripeError:
    return errors.invalid_request(message, param=param)


def _line_item(ctx: Context, price: dict, charged: dict, quantity: int) -> dict:
    """A line item showing ``price`` as it is, charged at ``charged`` (the price in the session's
    currency: the same, or the copy with its currency_options amount)."""
    amount = charged["unit_amount"] * quantity
    return {
        "id": new_id("li"),
        "object": "item",
        "adjustable_quantity": None,
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": charged["currency"],
        "description": product_name(ctx, price),
        "discounts": [],
        "metadata": {},
        "price": price,
        "quantity": quantity,
        "taxes": [],
    }


def _resolve_line_items(ctx: Context, mode: str, specs: list[dict], currency: str | None) -> list[dict]:
    """The session's line items; with ``currency`` each price as charged in it."""
    items = []
    for n, spec in enumerate(specs):
        where = f"line_items[{n}]"
        if spec.get("price") and spec.get("price_data"):
            raise _fail("You may only specify one of these parameters: price, price_data.", f"{where}[price]")
        if spec.get("price"):
            price = load_price_param(ctx, spec["price"], f"{where}[price]")
            param = f"{where}[price]"
        elif spec.get("price_data"):
            price = inline_price(ctx, spec["price_data"], f"{where}[price_data]")
            param = f"{where}[price_data]"
        else:
            raise _fail("You must specify either `price` or `price_data` for each line item.", f"{where}[price]")
        if "quantity" not in spec:
            raise errors.missing_param(f"{where}[quantity]")
        quantity = spec["quantity"]
        if quantity < 1:
            raise _fail("Quantity must be greater than 0.", f"{where}[quantity]")
        if mode == "payment" and price["type"] == "recurring":
            raise _fail(
                "You specified `payment` mode but passed a recurring price. Either "
                "switch to `subscription` mode or use only one-time prices.",
                param,
            )
        if price["unit_amount"] is None:
            raise _fail("The price has no unit amount.", param)
        items.append(_line_item(ctx, price, in_currency(price, currency, param), quantity))
    if mode == "subscription" and not any(i["price"]["type"] == "recurring" for i in items):
        raise _fail(
            "You must provide at least one recurring price in `subscription` mode when using prices.", "line_items"
        )
    if len({i["currency"] for i in items}) > 1:
        raise _fail("Line items must all have the same currency.", "line_items")
    recurring = {
        (i["price"]["recurring"]["interval"], i["price"]["recurring"]["interval_count"])
        for i in items
        if i["price"]["type"] == "recurring"
    }
    if len(recurring) > 1:
        raise _fail("Checkout does not support multiple prices with different billing intervals.", "line_items")
    return items


@endpoint("POST", "/v1/checkout/sessions", params="checkout.SessionCreateParams", supported=_CREATE)
def create_session(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "mode" not in params:
        raise errors.missing_param("mode")
    mode = params["mode"]
    if params.get("ui_mode") not in (None, "hosted_page", "hosted"):
        raise errors.invalid_request(
            "Only the hosted Checkout page is supported by the sandbox.", param="ui_mode", code="parameter_unsupported"
        )
    customer = None
    if params.get("customer"):
        customer = ctx.load(params["customer"], "customer", param="customer", status=400)
        if params.get("customer_email"):
            raise _fail("You may only specify one of these parameters: customer, customer_email.", "customer_email")
    items = _session_items(ctx, mode, params)
    if customer is not None and mode == "subscription" and customer.get("currency"):
        lock_customer_currency(ctx, customer, items[0]["currency"])
    for key, kind in (("payment_intent_data", "payment"), ("subscription_data", "subscription")):
        if params.get(key) and mode != kind:
            raise _fail(f"You can not pass `{key}` in `{mode}` mode.", key)
    session = _new_session(ctx, params, customer, items, _expires_at(ctx, params))
    apply_metadata(session, params.get("metadata"))
    if mode == "setup":
        session["payment_status"] = "no_payment_required"
    ctx.store.put(session)
    ctx.store.schedule(session["expires_at"], "checkout.session.expire", session["id"])
    return session


def _session_items(ctx: Context, mode: str, params: dict) -> list[dict]:
    if mode == "setup":
        if params.get("line_items"):
            raise _fail("You cannot pass `line_items` in `setup` mode.", "line_items")
        if not params.get("currency"):
            raise errors.missing_param("currency")
        return []
    if not params.get("line_items"):
        raise errors.missing_param("line_items")
    return _resolve_line_items(ctx, mode, params["line_items"], requested_currency(params))


def _expires_at(ctx: Context, params: dict) -> int:
    now = ctx.now()
    expires_at = params.get("expires_at", now + MAX_EXPIRY)
    if expires_at > now + MAX_EXPIRY:
        raise _fail(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.", "expires_at"
        )
    if expires_at < now + MIN_EXPIRY:
        raise _fail(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.", "expires_at"
        )
    return expires_at


def customer_details(email: str | None, name: str | None = None, phone: str | None = None) -> dict:
    """A session's ``customer_details`` (what the buyer gave, or the customer's)."""
    return {
        "address": None,
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": name,
        "phone": phone,
        "tax_exempt": "none",
        "tax_ids": [],
    }


_NO_INVOICE_CREATION = {
    "enabled": False,
    "invoice_data": {
        "account_tax_ids": None,
        "custom_fields": None,
        "description": None,
        "footer": None,
        "issuer": None,
        "metadata": {},
        "rendering_options": None,
    },
}


def _customer_fields(params: dict, customer: dict | None) -> dict:
    """Who pays: the given customer, an email, or a customer Checkout creates (``customer_creation``)."""
    creation = None if customer or params["mode"] == "subscription" else params.get("customer_creation", "if_required")
    details = customer_details(customer.get("email"), customer.get("name"), customer.get("phone")) if customer else None
    return {
        "customer": customer["id"] if customer else None,
        "customer_account": None,
        "customer_creation": creation,
        "customer_details": details,
        "customer_email": params.get("customer_email"),
    }


def _payment_method_fields(params: dict) -> dict:
    return {
        "payment_method_collection": "always" if params["mode"] == "subscription" else None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "allowed_payment_method_types": params.get("allowed_payment_method_types"),
        "payment_method_types": params.get("allowed_payment_method_types") or ["card"],
    }


def _private(params: dict, items: list[dict]) -> dict:
    """What the sandbox keeps for completing the session (never shown)."""
    return {
        "line_items": items,
        "payment_intent_data": params.get("payment_intent_data") or {},
        "subscription_data": params.get("subscription_data") or {},
    }


_NO_CUSTOM_TEXT = {"after_submit": None, "shipping_address": None, "submit": None, "terms_of_service_acceptance": None}


def _new_session(ctx: Context, params: dict, customer: dict | None, items: list[dict], expires_at: int) -> dict:
    mode = params["mode"]
    session_id = new_id("cs_test")
    subtotal = sum(i["amount_subtotal"] for i in items) if items else None
    currency = items[0]["currency"] if items else (params.get("currency") or "").lower() or None
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": subtotal,
        "amount_total": subtotal,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": ctx.now(),
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": dict(_NO_CUSTOM_TEXT),
        **_customer_fields(params, customer),
        "discounts": [],
        "expires_at": expires_at,
        "invoice": None,
        "invoice_creation": copy.deepcopy(_NO_INVOICE_CREATION) if mode == "payment" else None,
        "livemode": False,
        "locale": params.get("locale"),
        "metadata": {},
        "mode": mode,
        "payment_intent": None,
        "payment_link": None,
        **_payment_method_fields(params),
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": ({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0} if items else None),
        "ui_mode": "hosted_page",
        "url": f"{ctx.public_url()}/c/pay/{session_id}",
        "wallet_options": None,
        "_sandbox": _private(params, items),
    }


retrieve_session = retrieve_endpoint(
    "/v1/checkout/sessions/<session_id>",
    "checkout.session",
    params="checkout.SessionRetrieveParams",
    label="checkout.session",
)
list_sessions = list_endpoint(
    "/v1/checkout/sessions",
    "checkout.session",
    params="checkout.SessionListParams",
    filters=("customer", "payment_intent", "subscription", "status"),
)


def _line_items_list(session: dict) -> dict:
    items = (session.get("_sandbox") or {}).get("line_items", [])
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


@includable("checkout.session", "line_items")
def _line_items(store, session: dict) -> dict:
    return _line_items_list(session)


@endpoint(
    "GET",
    "/v1/checkout/sessions/<session_id>/line_items",
    params="checkout.SessionListLineItemsParams",
    supported=LIST_PARAMS,
)
def list_line_items(ctx: Context, params: dict, session_id: str) -> dict:
    ctx.require_secret_key()
    session = ctx.load(session_id, "checkout.session", label="checkout.session")
    items = _line_items_list(session)["data"]
    return list_response(items, f"/v1/checkout/sessions/{session_id}/line_items", params)


def expire_session_internal(ctx: Context, session: dict) -> dict:
    session["status"] = "expired"
    session["url"] = None
    pi_id = session.get("payment_intent")
    if pi_id:
        pi = ctx.store.get(pi_id)
        if pi and pi["status"] in ("requires_payment_method", "requires_confirmation", "requires_action"):
            payment_intents.cancel_intent(ctx, pi, reason="abandoned")
    ctx.store.cancel_jobs("checkout.session.expire", session["id"])
    ctx.store.put(session)
    ctx.emit("checkout.session.expired", session)
    return session


@endpoint("POST", "/v1/checkout/sessions/<session_id>/expire", params="checkout.SessionExpireParams")
def expire_session(ctx: Context, params: dict, session_id: str) -> dict:
    ctx.require_secret_key()
    session = ctx.load(session_id, "checkout.session", label="checkout.session")
    if session["status"] != "open":
        raise errors.invalid_request(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".',
            code="unexpected_state",
        )
    return expire_session_internal(ctx, session)


@job("checkout.session.expire")
def _expire_job(ctx: Context, session_id: str, data: dict) -> None:
    session = ctx.store.get(session_id)
    if session is not None and session["status"] == "open":
        expire_session_internal(ctx, session)
