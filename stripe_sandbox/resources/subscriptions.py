"""Subscriptions: create (with the first invoice), retrieve, list, update (fields, cancel at
period end, price and quantity changes with prorations), cancel; subscription items.

A subscription follows its invoices through the ``subscription.invoice_paid`` and
``subscription.invoice_payment_failed`` signals (:mod:`.invoices`). See :mod:`.billing` for the
state machine; the clock's part (renewals, expiry) is in :mod:`.renewals`.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from .. import errors
from ..api import (
    LIST_PARAMS,
    Context,
    apply_metadata,
    endpoint,
    list_endpoint,
    list_response,
    listen,
    retrieve_endpoint,
)
from ..primitives import new_id
from .billing import (
    add_interval,
    attach_payment_method,
    item_line,
    items_of,
    new_line,
    period_of,
    plan_of,
    product_name,
    resolve_items,
    save_subscription,
)
from .invoices import (
    attempt_payment,
    create_invoice,
    default_payment_method,
    finalize,
    no_payment_method_error,
    open_invoices,
    payment_error,
    void,
)
from .proration import change_items, plan_change, proration_date
from .renewals import cancel_subscription_internal, schedule_renewal

INCOMPLETE_EXPIRY = 23 * 3600


def _new_item(ctx: Context, sub_id: str, price: dict, quantity: int, metadata,
              start: int, end: int) -> dict:
    item: dict[str, Any] = {
        "id": new_id("si"), "object": "subscription_item", "billing_thresholds": None,
        "created": ctx.now(), "current_period_end": end, "current_period_start": start,
        "discounts": [], "metadata": {}, "plan": plan_of(price), "price": price,
        "quantity": quantity, "subscription": sub_id, "tax_rates": [],
    }
    apply_metadata(item, metadata)
    return item


# --- create ----------------------------------------------------------------------------------

def create_subscription_internal(ctx: Context, *, customer: dict, items: list[tuple],
                                 default_payment_method: str | None = None,
                                 payment_behavior: str = "allow_incomplete",
                                 off_session: bool = False, metadata=None,
                                 description: str | None = None,
                                 cancel_at_period_end: bool = False,
                                 save_default_payment_method: str | None = None,
                                 extra_lines: Sequence[tuple[dict, int]] = (),
                                 checkout_session: str | None = None) -> dict:
    """Create a subscription and its first invoice (finalized, with its PaymentIntent). For
    ``allow_incomplete`` / ``error_if_incomplete`` the invoice is charged now with the default
    payment method; ``default_incomplete`` leaves it for the caller. Returns the fresh object."""
    now = ctx.now()
    sub_id = new_id("sub")
    first_price = items[0][0]
    interval = first_price["recurring"]["interval"]
    count = first_price["recurring"]["interval_count"]
    end = add_interval(now, interval, count, 1)
    sub_items = [_new_item(ctx, sub_id, price, quantity, item_metadata, now, end)
                 for price, quantity, item_metadata in items]
    sub = _new_subscription(sub_id, sub_items, customer=customer, currency=first_price["currency"],
                            now=now, end=end, default_payment_method=default_payment_method,
                            description=description, cancel_at_period_end=cancel_at_period_end,
                            save_default_payment_method=save_default_payment_method,
                            checkout_session=checkout_session)
    apply_metadata(sub, metadata)
    invoice = _first_invoice(ctx, sub, customer, extra_lines, checkout_session)
    sub = ctx.store.require(sub_id)
    if sub["status"] == "incomplete":
        ctx.store.schedule(now + INCOMPLETE_EXPIRY, "subscription.incomplete_expire", sub_id)
        _pay_first_invoice(ctx, invoice, sub, payment_behavior, off_session)
    return ctx.store.require(sub_id)


def _new_subscription(sub_id: str, sub_items: list[dict], *, customer: dict, currency: str,
                      now: int, end: int, default_payment_method: str | None,
                      description: str | None, cancel_at_period_end: bool,
                      save_default_payment_method: str | None,
                      checkout_session: str | None) -> dict:
    """A new subscription object, ``incomplete`` until its first invoice is paid."""
    sub = {
        "id": sub_id, "object": "subscription", "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible",
                         "updated_at": None},
        "billing_schedules": [], "billing_thresholds": None,
        "cancel_at": end if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": now,
        "currency": currency, "customer": customer["id"],
        "customer_account": None, "days_until_due": None,
        "default_payment_method": default_payment_method, "default_source": None,
        "default_tax_rates": [], "description": description, "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": sub_items, "has_more": False,
                  "total_count": len(sub_items),
                  "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": None, "livemode": False, "metadata": {},
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": save_default_payment_method
                             or "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None,
        "pending_update": None, "schedule": None, "start_date": now, "status": "incomplete",
        "test_clock": None, "transfer_data": None, "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
        "_sandbox": {"pending": [], "period": 0, "checkout_session": checkout_session},
    }
    return sub


def _first_invoice(ctx: Context, sub: dict, customer: dict,
                   extra_lines: Sequence[tuple[dict, int]], checkout_session: str | None) -> dict:
    """Store ``sub`` and its first invoice (its items, plus one-time prices bought with it),
    finalized."""
    now = sub["created"]
    end = period_of(sub)[1]
    invoice_id = new_id("in")
    lines = [item_line(ctx, invoice_id, sub, item, now, end) for item in items_of(sub)]
    for price, quantity in extra_lines:  # one-time prices bought with the subscription
        lines.append(new_line(ctx, invoice_id=invoice_id, sub=sub, item=None, price=price,
                              quantity=quantity, amount=price["unit_amount"] * quantity,
                              description=product_name(ctx, price), start=now, end=now))
    sub["latest_invoice"] = invoice_id
    save_subscription(ctx, sub)
    ctx.emit("customer.subscription.created", sub)
    invoice = create_invoice(ctx, customer=customer, sub=sub,
                             billing_reason="subscription_create", lines=lines,
                             period_start=now, period_end=now, invoice_id=invoice_id)
    if checkout_session:
        invoice["_sandbox"]["checkout_session"] = checkout_session
        ctx.store.put(invoice)
    return finalize(ctx, invoice)


def _pay_first_invoice(ctx: Context, invoice: dict, sub: dict, payment_behavior: str,
                       off_session: bool) -> None:
    """``allow_incomplete`` / ``error_if_incomplete``: charge the default payment method now
    (``error_if_incomplete`` answers 402, rolling everything back, unless it is paid)."""
    if payment_behavior not in ("allow_incomplete", "error_if_incomplete"):
        return
    pm = default_payment_method(ctx, invoice, sub)
    if pm is None and payment_behavior == "error_if_incomplete":
        raise no_payment_method_error()
    if pm is not None:
        invoice = attempt_payment(ctx, invoice, payment_method=pm,
                                  off_session=off_session, raise_on_decline=False)
        if payment_behavior == "error_if_incomplete" and invoice["status"] != "paid":
            raise payment_error(ctx, invoice)


_SUB_CREATE = ["customer", "items", "default_payment_method", "payment_behavior",
               "off_session", "metadata", "description", "cancel_at_period_end",
               "payment_settings[save_default_payment_method]"]


@endpoint("POST", "/v1/subscriptions", params="SubscriptionCreateParams",
          supported=_SUB_CREATE)
def create_subscription(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "customer" not in params:
        raise errors.missing_param("customer")
    customer = ctx.load(params["customer"], "customer", param="customer", status=400)
    if not params.get("items"):
        raise errors.missing_param("items")
    behavior = params.get("payment_behavior", "allow_incomplete")
    if behavior == "pending_if_incomplete":
        raise errors.invalid_request("payment_behavior=pending_if_incomplete is only for "
                                     "updates.", param="payment_behavior")
    items = resolve_items(ctx, params["items"])
    pm = None
    if params.get("default_payment_method"):
        pm = attach_payment_method(ctx, params["default_payment_method"], customer["id"],
                                   "default_payment_method")
    ctx.public_url()  # remembered for the renewals the clock runs
    return create_subscription_internal(
        ctx, customer=customer, items=items, default_payment_method=pm,
        payment_behavior=behavior, off_session=params.get("off_session", False),
        metadata=params.get("metadata"), description=params.get("description"),
        cancel_at_period_end=params.get("cancel_at_period_end", False),
        save_default_payment_method=(params.get("payment_settings") or {})
        .get("save_default_payment_method"))


retrieve_subscription = retrieve_endpoint("/v1/subscriptions/<sub_id>", "subscription",
                                          params="SubscriptionRetrieveParams")

_ENDED = ("canceled", "incomplete_expired")


def _by_status_and_price(subs: list[dict], params: dict) -> list[dict]:
    """``status`` (default: not ended; ``ended``; ``all``; one status) and ``price``."""
    status = params.get("status")
    if status is None:
        subs = [s for s in subs if s["status"] not in _ENDED]
    elif status == "ended":
        subs = [s for s in subs if s["status"] in _ENDED]
    elif status != "all":
        subs = [s for s in subs if s["status"] == status]
    if "price" in params:
        subs = [s for s in subs if any(i["price"]["id"] == params["price"] for i in items_of(s))]
    return subs


list_subscriptions = list_endpoint("/v1/subscriptions", "subscription",
                                   params="SubscriptionListParams", filters=("customer",),
                                   extra=("status", "price"), where=_by_status_and_price)


# --- update ----------------------------------------------------------------------------------

_SUB_UPDATE = ["items", "proration_behavior", "proration_date", "cancel_at_period_end",
               "default_payment_method", "metadata", "description", "payment_behavior",
               "off_session", "payment_settings[save_default_payment_method]",
               "cancellation_details"]


@endpoint("POST", "/v1/subscriptions/<sub_id>", params="SubscriptionUpdateParams",
          supported=_SUB_UPDATE)
def update_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(sub_id, "subscription")
    if sub["status"] in _ENDED:
        raise errors.invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param=next(iter(k for k in params if k != "expand"), None))
    if params.get("payment_behavior") == "pending_if_incomplete":
        raise errors.invalid_request(
            "payment_behavior=pending_if_incomplete (pending updates) is valid at Stripe but not "
            "supported by the sandbox.", param="payment_behavior", code="parameter_unsupported")
    ctx.public_url()  # remembered for the renewals the clock runs
    before = copy.deepcopy(sub)
    _update_fields(ctx, sub, params)
    if "cancel_at_period_end" in params:
        _cancel_at_period_end(ctx, sub, params["cancel_at_period_end"])
    invoice_now = _change_items(ctx, sub, params) if params.get("items") else None
    save_subscription(ctx, sub, before)
    if invoice_now:
        _invoice_update_now(ctx, sub, invoice_now, params)
    return ctx.store.require(sub_id)


def _update_fields(ctx: Context, sub: dict, params: dict) -> None:
    """metadata, description, cancellation_details, payment_settings, default_payment_method."""
    if "metadata" in params:
        apply_metadata(sub, params["metadata"])
    if "description" in params:
        sub["description"] = params["description"] or None
    if "cancellation_details" in params:
        details = params["cancellation_details"] or {}
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = details[key] or None
    if (params.get("payment_settings") or {}).get("save_default_payment_method"):
        sub["payment_settings"]["save_default_payment_method"] = \
            params["payment_settings"]["save_default_payment_method"]
    if "default_payment_method" in params:
        pm = params["default_payment_method"]
        sub["default_payment_method"] = attach_payment_method(
            ctx, pm, sub["customer"], "default_payment_method") if pm else None


def _cancel_at_period_end(ctx: Context, sub: dict, cancel: bool) -> None:
    if sub["status"] == "incomplete" and cancel:
        raise errors.invalid_request("An incomplete subscription cannot be scheduled for "
                                     "cancellation.", param="cancel_at_period_end")
    sub["cancel_at_period_end"] = cancel
    sub["cancel_at"] = period_of(sub)[1] if cancel else None
    if cancel:
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        sub["canceled_at"] = ctx.now()  # Stripe stamps the request, not the period end
    else:
        sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
        sub["canceled_at"] = None


def _change_items(ctx: Context, sub: dict, params: dict) -> list[dict] | None:
    """New prices or quantities: their prorations are kept for the next invoice, or returned
    to be invoiced now (``always_invoice``)."""
    behavior = params.get("proration_behavior", "create_prorations")
    changes = plan_change(ctx, sub, params["items"])
    at = proration_date(ctx, sub, params.get("proration_date"))
    prorations = change_items(ctx, sub, changes, at, prorate=behavior != "none" and
                              sub["status"] in ("active", "past_due", "trialing"))
    if behavior != "always_invoice":
        sub["_sandbox"]["pending"] += prorations
        return None
    prorations = sub["_sandbox"]["pending"] + prorations
    sub["_sandbox"]["pending"] = []
    return prorations or None


def _invoice_update_now(ctx: Context, sub: dict, lines: list[dict], params: dict) -> None:
    """``proration_behavior=always_invoice``: invoice the prorations now and charge them."""
    customer = ctx.store.get(sub["customer"])
    now = ctx.now()
    invoice = create_invoice(ctx, customer=customer, sub=sub,
                             billing_reason="subscription_update", lines=lines,
                             period_start=now, period_end=now)
    sub = ctx.store.require(sub["id"])
    before = copy.deepcopy(sub)
    sub["latest_invoice"] = invoice["id"]
    save_subscription(ctx, sub, before)
    invoice = finalize(ctx, invoice)
    if invoice["status"] == "open":
        pm = default_payment_method(ctx, invoice, sub)
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior == "default_incomplete":
            return
        invoice = attempt_payment(ctx, invoice, payment_method=pm,
                                  off_session=params.get("off_session", True),
                                  raise_on_decline=False)
        if behavior == "error_if_incomplete" and invoice["status"] != "paid":
            raise payment_error(ctx, invoice)


# --- cancel ----------------------------------------------------------------------------------

@endpoint("DELETE", "/v1/subscriptions/<sub_id>", params="SubscriptionCancelParams",
          supported=["cancellation_details", "prorate", "invoice_now"])
def cancel_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(sub_id, "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(
            f"No such subscription: '{sub_id}'", code="resource_missing", status=404)
    if params.get("prorate") or params.get("invoice_now"):
        raise errors.invalid_request("Final invoices on cancellation (prorate, invoice_now) are "
                                     "not supported by the sandbox.",
                                     param="prorate" if params.get("prorate") else "invoice_now",
                                     code="parameter_unsupported")
    details = params.get("cancellation_details") or {}
    if sub["status"] == "incomplete":
        for invoice in open_invoices(ctx, sub_id):
            void(ctx, invoice)
        sub = ctx.store.require(sub_id)
    return cancel_subscription_internal(ctx, sub, reason="cancellation_requested",
                                        comment=details.get("comment"),
                                        feedback=details.get("feedback"))


# --- subscription items ------------------------------------------------------------------------

@endpoint("GET", "/v1/subscription_items", params="SubscriptionItemListParams",
          supported=["subscription", *LIST_PARAMS])
def list_subscription_items(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(params["subscription"], "subscription", param="subscription", status=400)
    return list_response(items_of(sub), f"/v1/subscription_items?subscription={sub['id']}",
                         params)


retrieve_subscription_item = retrieve_endpoint("/v1/subscription_items/<item_id>",
                                               "subscription_item",
                                               params="SubscriptionItemRetrieveParams",
                                               label="subscription item")


# --- following the invoices ---------------------------------------------------------------

@listen("subscription.invoice_paid")
def _on_invoice_paid(ctx: Context, sub: dict, *, invoice: dict, pi: dict | None) -> None:
    """Paid first invoice → ``active`` (and renewals scheduled); the last open invoice of a
    ``past_due`` one paid → ``active``; the card may become the default payment method."""
    before = copy.deepcopy(sub)
    if pi is not None and pi.get("payment_method") and \
            (sub.get("payment_settings") or {}).get("save_default_payment_method") == \
            "on_subscription":
        sub["default_payment_method"] = pi["payment_method"]
    if sub["status"] == "incomplete" and invoice["billing_reason"] == "subscription_create":
        sub["status"] = "active"
        ctx.store.cancel_jobs("subscription.incomplete_expire", sub["id"])
        schedule_renewal(ctx, sub)
    elif sub["status"] in ("past_due", "unpaid") and not open_invoices(ctx, sub["id"]):
        sub["status"] = "active"
    save_subscription(ctx, sub, before)


@listen("subscription.invoice_payment_failed")
def _on_invoice_payment_failed(ctx: Context, sub: dict, *, invoice: dict) -> None:
    """A failed renewal (or update) invoice makes an active subscription ``past_due``."""
    if sub["status"] == "active" and invoice["billing_reason"] != "subscription_create":
        before = copy.deepcopy(sub)
        sub["status"] = "past_due"
        save_subscription(ctx, sub, before)
