"""Subscriptions: create (with the first invoice), retrieve, list, cancel; subscription items.
Updates (fields, cancel at period end, price and quantity changes with prorations) are in
:mod:`.subscription_updates`.

A subscription follows its invoices through the ``subscription.invoice_paid`` and
``subscription.invoice_payment_failed`` signals (:mod:`.invoice_payments`). See :mod:`.billing`
for the state machine; the clock's part (renewals, expiry) is in :mod:`.renewals`.
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
from .invoice_payments import (
    attempt_payment,
    default_payment_method,
    finalize,
    no_payment_method_error,
    payment_error,
    void,
)
from .invoices import create_invoice, open_invoices
from .price_currencies import in_currency, lock_customer_currency, requested_currency
from .renewals import cancel_subscription_internal, schedule_renewal

INCOMPLETE_EXPIRY = 23 * 3600


def _new_item(ctx: Context, sub_id: str, price: dict, quantity: int, metadata, start: int, end: int) -> dict:
    item: dict[str, Any] = {
        "id": new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": ctx.now(),
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "plan": plan_of(price),
        "price": price,
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    }
    apply_metadata(item, metadata)
    return item


# --- create ----------------------------------------------------------------------------------


def create_subscription_internal(
    ctx: Context,
    *,
    customer: dict,
    items: list[tuple],
    default_payment_method: str | None = None,
    payment_behavior: str = "allow_incomplete",
    off_session: bool = False,
    metadata=None,
    description: str | None = None,
    cancel_at_period_end: bool = False,
    save_default_payment_method: str | None = None,
    extra_lines: Sequence[tuple[dict, int]] = (),
    checkout_session: str | None = None,
    currency: str | None = None,
) -> dict:
    """Create a subscription and its first invoice (finalized, with its PaymentIntent). For
    ``allow_incomplete`` / ``error_if_incomplete`` the invoice is charged now with the default
    payment method; ``default_incomplete`` leaves it for the caller. Returns the fresh object."""
    now = ctx.now()
    sub_id = new_id("sub")
    first_price = items[0][0]
    interval = first_price["recurring"]["interval"]
    count = first_price["recurring"]["interval_count"]
    end = add_interval(now, interval, count, 1)
    sub_items = [
        _new_item(ctx, sub_id, price, quantity, item_metadata, now, end) for price, quantity, item_metadata in items
    ]
    sub = _new_subscription(
        sub_id,
        sub_items,
        customer=customer,
        currency=currency or first_price["currency"],
        now=now,
        end=end,
        default_payment_method=default_payment_method,
        description=description,
        cancel_at_period_end=cancel_at_period_end,
        save_default_payment_method=save_default_payment_method,
        checkout_session=checkout_session,
    )
    apply_metadata(sub, metadata)
    lock_customer_currency(ctx, customer, sub["currency"])
    invoice = _first_invoice(ctx, sub, customer, extra_lines, checkout_session)
    sub = ctx.store.require(sub_id)
    if sub["status"] == "incomplete":
        ctx.store.schedule(now + INCOMPLETE_EXPIRY, "subscription.incomplete_expire", sub_id)
        _pay_first_invoice(ctx, invoice, sub, payment_behavior, off_session)
    return ctx.store.require(sub_id)


def _billing(now: int) -> dict:
    return {
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible", "updated_at": None},
        "billing_schedules": [],
        "billing_thresholds": None,
    }


def _cancellation(end: int, cancel_at_period_end: bool) -> dict:
    return {
        "cancel_at": end if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
    }


def _items_list(sub_id: str, sub_items: list[dict]) -> dict:
    return {
        "object": "list",
        "data": sub_items,
        "has_more": False,
        "total_count": len(sub_items),
        "url": f"/v1/subscription_items?subscription={sub_id}",
    }


def _payment_settings(save_default_payment_method: str | None) -> dict:
    return {
        "payment_method_options": None,
        "payment_method_types": None,
        "save_default_payment_method": save_default_payment_method or "off",
    }


def _nothing_pending() -> dict:
    return {"pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None}


def _no_trial() -> dict:
    return {
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def _new_subscription(
    sub_id: str,
    sub_items: list[dict],
    *,
    customer: dict,
    currency: str,
    now: int,
    end: int,
    default_payment_method: str | None,
    description: str | None,
    cancel_at_period_end: bool,
    save_default_payment_method: str | None,
    checkout_session: str | None,
) -> dict:
    """A new subscription object, ``incomplete`` until its first invoice is paid."""
    return {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        **_billing(now),
        **_cancellation(end, cancel_at_period_end),
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": _items_list(sub_id, sub_items),
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": _payment_settings(save_default_payment_method),
        **_nothing_pending(),
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": None,
        "transfer_data": None,
        **_no_trial(),
        "_sandbox": {"pending": [], "period": 0, "checkout_session": checkout_session},
    }


def _first_invoice(
    ctx: Context, sub: dict, customer: dict, extra_lines: Sequence[tuple[dict, int]], checkout_session: str | None
) -> dict:
    """Store ``sub`` and its first invoice (its items, plus one-time prices bought with it),
    finalized."""
    now = sub["created"]
    end = period_of(sub)[1]
    invoice_id = new_id("in")
    lines = [item_line(ctx, invoice_id, sub, item, now, end) for item in items_of(sub)]
    for one_time, quantity in extra_lines:  # one-time prices bought with the subscription
        price = in_currency(one_time, sub["currency"], "price")
        lines.append(
            new_line(
                ctx,
                invoice_id=invoice_id,
                sub=sub,
                item=None,
                price=price,
                quantity=quantity,
                amount=price["unit_amount"] * quantity,
                description=product_name(ctx, price),
                start=now,
                end=now,
            )
        )
    sub["latest_invoice"] = invoice_id
    save_subscription(ctx, sub)
    ctx.emit("customer.subscription.created", sub)
    invoice = create_invoice(
        ctx,
        customer=customer,
        sub=sub,
        billing_reason="subscription_create",
        lines=lines,
        period_start=now,
        period_end=now,
        invoice_id=invoice_id,
    )
    if checkout_session:
        invoice["_sandbox"]["checkout_session"] = checkout_session
        ctx.store.put(invoice)
    return finalize(ctx, invoice)


def _pay_first_invoice(ctx: Context, invoice: dict, sub: dict, payment_behavior: str, off_session: bool) -> None:
    """``allow_incomplete`` / ``error_if_incomplete``: charge the default payment method now
    (``error_if_incomplete`` answers 402, rolling everything back, unless it is paid)."""
    if payment_behavior not in ("allow_incomplete", "error_if_incomplete"):
        return
    pm = default_payment_method(ctx, invoice, sub)
    if pm is None and payment_behavior == "error_if_incomplete":
        raise no_payment_method_error()
    if pm is not None:
        invoice = attempt_payment(ctx, invoice, payment_method=pm, off_session=off_session, raise_on_decline=False)
        if payment_behavior == "error_if_incomplete" and invoice["status"] != "paid":
            raise payment_error(ctx, invoice)


_SUB_CREATE = [
    "customer",
    "items",
    "default_payment_method",
    "payment_behavior",
    "off_session",
    "metadata",
    "description",
    "cancel_at_period_end",
    "payment_settings[save_default_payment_method]",
    "currency",
]


@endpoint("POST", "/v1/subscriptions", params="SubscriptionCreateParams", supported=_SUB_CREATE)
def create_subscription(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "customer" not in params:
        raise errors.missing_param("customer")
    customer = ctx.load(params["customer"], "customer", param="customer", status=400)
    if not params.get("items"):
        raise errors.missing_param("items")
    behavior = params.get("payment_behavior", "allow_incomplete")
    if behavior == "pending_if_incomplete":
        raise errors.invalid_request(
            "payment_behavior=pending_if_incomplete is only for updates.", param="payment_behavior"
        )
    items = resolve_items(ctx, params["items"])
    currency = requested_currency(params) or items[0][0]["currency"]
    for n, (price, _, _) in enumerate(items):
        in_currency(price, currency, f"items[{n}][price]")  # each price must have an amount in it
    lock_customer_currency(ctx, customer, currency)
    pm = None
    if params.get("default_payment_method"):
        pm = attach_payment_method(ctx, params["default_payment_method"], customer["id"], "default_payment_method")
    ctx.public_url()  # remembered for the renewals the clock runs
    return create_subscription_internal(
        ctx,
        customer=customer,
        items=items,
        default_payment_method=pm,
        payment_behavior=behavior,
        off_session=params.get("off_session", False),
        metadata=params.get("metadata"),
        description=params.get("description"),
        cancel_at_period_end=params.get("cancel_at_period_end", False),
        save_default_payment_method=(params.get("payment_settings") or {}).get("save_default_payment_method"),
        currency=currency,
    )


retrieve_subscription = retrieve_endpoint(
    "/v1/subscriptions/<sub_id>", "subscription", params="SubscriptionRetrieveParams"
)

ENDED = ("canceled", "incomplete_expired")


def _by_status_and_price(subs: list[dict], params: dict) -> list[dict]:
    """``status`` (default: not ended; ``ended``; ``all``; one status) and ``price``."""
    status = params.get("status")
    if status is None:
        subs = [s for s in subs if s["status"] not in ENDED]
    elif status == "ended":
        subs = [s for s in subs if s["status"] in ENDED]
    elif status != "all":
        subs = [s for s in subs if s["status"] == status]
    if "price" in params:
        subs = [s for s in subs if any(i["price"]["id"] == params["price"] for i in items_of(s))]
    return subs


list_subscriptions = list_endpoint(
    "/v1/subscriptions",
    "subscription",
    params="SubscriptionListParams",
    filters=("customer",),
    extra=("status", "price"),
    where=_by_status_and_price,
)


# --- cancel ----------------------------------------------------------------------------------


@endpoint(
    "DELETE",
    "/v1/subscriptions/<sub_id>",
    params="SubscriptionCancelParams",
    supported=["cancellation_details", "prorate", "invoice_now"],
)
def cancel_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(sub_id, "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(f"No such subscription: '{sub_id}'", code="resource_missing", status=404)
    if params.get("prorate") or params.get("invoice_now"):
        raise errors.invalid_request(
            "Final invoices on cancellation (prorate, invoice_now) are not supported by the sandbox.",
            param="prorate" if params.get("prorate") else "invoice_now",
            code="parameter_unsupported",
        )
    details = params.get("cancellation_details") or {}
    if sub["status"] == "incomplete":
        for invoice in open_invoices(ctx, sub_id):
            void(ctx, invoice)
        sub = ctx.store.require(sub_id)
    return cancel_subscription_internal(
        ctx, sub, reason="cancellation_requested", comment=details.get("comment"), feedback=details.get("feedback")
    )


# --- subscription items ------------------------------------------------------------------------


@endpoint(
    "GET", "/v1/subscription_items", params="SubscriptionItemListParams", supported=["subscription", *LIST_PARAMS]
)
def list_subscription_items(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(params["subscription"], "subscription", param="subscription", status=400)
    return list_response(items_of(sub), f"/v1/subscription_items?subscription={sub['id']}", params)


retrieve_subscription_item = retrieve_endpoint(
    "/v1/subscription_items/<item_id>",
    "subscription_item",
    params="SubscriptionItemRetrieveParams",
    label="subscription item",
)


# --- following the invoices ---------------------------------------------------------------


@listen("subscription.invoice_paid")
def _on_invoice_paid(ctx: Context, sub: dict, *, invoice: dict, pi: dict | None) -> None:
    """Paid first invoice → ``active`` (and renewals scheduled); the last open invoice of a
    ``past_due`` one paid → ``active``; the card may become the default payment method."""
    before = copy.deepcopy(sub)
    if (
        pi is not None
        and pi.get("payment_method")
        and (sub.get("payment_settings") or {}).get("save_default_payment_method") == "on_subscription"
    ):
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
