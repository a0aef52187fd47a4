"""Billing, shared: what subscriptions, invoices, proration and renewals all use.

The billing resources are split by family:

* :mod:`.subscriptions` -- create, retrieve, list, cancel; subscription items;
* :mod:`.subscription_updates` -- update (fields, cancel at period end, price changes);
* :mod:`.invoices` -- build, retrieve, list invoices;
* :mod:`.invoice_payments` -- finalize, pay, void, react to the PaymentIntent; invoice payments;
* :mod:`.proration` -- price changes (credit for unused time, charge for the remaining time) and
  ``POST /v1/invoices/create_preview``;
* :mod:`.renewals` -- what the sandbox clock does: period ends, renewals, expiries;
* :mod:`.billing_portal` -- billing portal sessions (their pages are in ``billing_pages``).

State machine of a subscription (charge_automatically, licensed prices):

* create → first invoice (``subscription_create``) finalized with a PaymentIntent (owner = the
  invoice). ``default_incomplete`` leaves it for the browser (``latest_invoice.
  confirmation_secret``); ``allow_incomplete`` / ``error_if_incomplete`` pay it now with the
  default payment method. Paid → ``active``; unpaid for 23 h → ``incomplete_expired``.
* at each period end (a clock job): cancel if ``cancel_at_period_end``, else advance the period
  (on the items), invoice it (``subscription_cycle``, with pending prorations) and charge it
  off-session. Failure → ``past_due`` with the invoice left open; paying it → ``active``.
* price change: prorations (credit for unused time on the old price, charge for the remaining
  time on the new one) pending for the next invoice, invoiced now (``always_invoice``) or none.

Invoices react to their PaymentIntent through the ``payment_intent.changed`` signal, whoever
confirms it (the sandbox, the SDK, the browser); they announce ``subscription.invoice_paid`` /
``subscription.invoice_payment_failed`` (to their subscription) and then ``invoice.paid`` /
``invoice.payment_failed`` (for Checkout).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from .. import errors
from ..api import Context
from ..money import format_invoice_amount
from ..primitives import new_id, public
from .catalog import new_product
from .payment_methods import attach_to_customer
from .price_currencies import check_currency_param, in_currency


def add_interval(anchor: int, interval: str, count: int, n: int) -> int:
    """``anchor`` moved by ``n`` × ``count`` intervals; months move by calendar month from the
    anchor (Jan 31 → Feb 28 → Mar 31), as Stripe's billing cycle anchor does."""
    if interval == "day":
        return anchor + 86400 * count * n
    if interval == "week":
        return anchor + 7 * 86400 * count * n
    start = datetime.fromtimestamp(anchor, UTC)
    months = count * n * (12 if interval == "year" else 1)
    years, month0 = divmod(start.month - 1 + months, 12)
    year, month = start.year + years, month0 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def format_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%-d %b %Y")


def _diff(before: dict, after: dict) -> dict:
    """Stripe's ``previous_attributes``: the old values of the top-level fields that changed."""
    old, new = public(before), public(after)
    return {k: old.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}


def product_name(ctx: Context, price: dict) -> str:
    product = ctx.store.get(price["product"]) or {}
    return product.get("name") or "Item"


def load_price_param(ctx: Context, price_id: str, param: str) -> dict:
    price = ctx.load(price_id, "price", param=param, status=400)
    if not price["active"]:
        raise errors.invalid_request(
            "The price specified is inactive. This field only accepts active prices.", param=param
        )
    return price


def _inline_product(ctx: Context, data: dict, param: str, product_data_ok: bool, now: int) -> dict:
    """``price_data[product]`` (an existing Product) or ``price_data[product_data]`` (a new one)."""
    if data.get("product"):
        return ctx.load(data["product"], "product", param=f"{param}[product]", status=400)
    if not (data.get("product_data") and product_data_ok):
        raise errors.missing_param(f"{param}[product_data]" if product_data_ok else f"{param}[product]")
    pd = data["product_data"]
    if not pd.get("name"):
        raise errors.missing_param(f"{param}[product_data][name]")
    return ctx.store.put(new_product(pd, now))


def _inline_recurring(data: dict) -> dict | None:
    if not data.get("recurring"):
        return None
    return {
        "interval": data["recurring"]["interval"],
        "interval_count": data["recurring"].get("interval_count", 1),
        "meter": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def inline_price(ctx: Context, data: dict, param: str, *, product_data_ok: bool = True) -> dict:
    """A Price created from ``price_data`` (Stripe creates it, inactive, for this use only)."""
    if "currency" not in data:
        raise errors.missing_param(f"{param}[currency]")
    if "unit_amount" not in data:
        raise errors.missing_param(f"{param}[unit_amount]")
    if data["unit_amount"] < 0:
        raise errors.invalid_request("Invalid non-negative integer", param=f"{param}[unit_amount]")
    now = ctx.now()
    product = _inline_product(ctx, data, param, product_data_ok, now)
    recurring = _inline_recurring(data)
    price = {
        "id": new_id("price"),
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": now,
        "currency": check_currency_param(data["currency"], f"{param}[currency]"),
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product["id"],
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": data["unit_amount"],
        "unit_amount_decimal": str(data["unit_amount"]),
    }
    ctx.store.put(price)
    return price


def plan_of(price: dict) -> dict:
    recurring = price["recurring"] or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval", "month"),
        "interval_count": recurring.get("interval_count", 1),
        "livemode": False,
        "metadata": dict(price.get("metadata") or {}),
        "meter": None,
        "nickname": price.get("nickname"),
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def attach_payment_method(ctx: Context, pm_id: str, customer_id: str, param: str) -> str:
    """A payment method for a customer's subscription: stored PMs must be attached to the
    customer (as at Stripe); test tokens (``pm_card_visa``) are attached on the way."""
    pm = ctx.store.get(pm_id)
    if pm is not None and pm.get("object") == "payment_method":
        if pm.get("customer") != customer_id:
            raise errors.invalid_request(
                f"The customer does not have a payment method with the ID {pm_id}. The "
                "payment method must be attached to the customer.",
                param=param,
                code="resource_missing",
            )
        return pm_id
    if not pm_id.startswith("pm_"):
        raise errors.no_such("PaymentMethod", pm_id, param, status=400)
    attached = attach_to_customer(ctx, pm_id, customer_id)
    return attached["id"] if isinstance(attached, dict) else pm_id


def items_of(sub: dict) -> list[dict]:
    return sub["items"]["data"]


def period_of(sub: dict) -> tuple[int, int]:
    item = items_of(sub)[0]
    return item["current_period_start"], item["current_period_end"]


def _interval(sub: dict) -> tuple[str, int]:
    recurring = items_of(sub)[0]["price"]["recurring"]
    return recurring["interval"], recurring["interval_count"]


def period_bounds(sub: dict, n: int) -> tuple[int, int]:
    interval, count = _interval(sub)
    anchor = sub["billing_cycle_anchor"]
    return add_interval(anchor, interval, count, n), add_interval(anchor, interval, count, n + 1)


def save_subscription(ctx: Context, sub: dict, before: dict | None = None) -> dict:
    """Store the subscription (and its items), emitting ``customer.subscription.updated`` with
    ``previous_attributes`` when ``before`` is given and something changed."""
    ctx.store.put(sub)
    for item in items_of(sub):
        ctx.store.put(item)
    if before is not None:
        previous = _diff(before, sub)
        if previous:
            ctx.emit("customer.subscription.updated", sub, previous)
    return sub


def _line_parent(sub: dict | None, item: dict | None, proration: bool, invoice_item: str | None) -> dict:
    """A line's ``parent``: the subscription item it bills, or an invoice item (one-time price)."""
    sub_id = sub["id"] if sub else None
    if item is not None:
        return {
            "invoice_item_details": None,
            "type": "subscription_item_details",
            "subscription_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
                "subscription_item": item["id"],
            },
        }
    return {
        "subscription_item_details": None,
        "type": "invoice_item_details",
        "invoice_item_details": {
            "invoice_item": invoice_item or new_id("ii"),
            "proration": proration,
            "proration_details": {"credited_items": None},
            "subscription": sub_id,
        },
    }


def new_line(
    ctx: Context,
    *,
    invoice_id: str | None,
    sub: dict | None,
    item: dict | None,
    price: dict,
    quantity: int,
    amount: int,
    description: str,
    start: int,
    end: int,
    proration: bool = False,
    invoice_item: str | None = None,
) -> dict:
    parent = _line_parent(sub, item, proration, invoice_item)
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": not proration,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": quantity,
        "subscription": sub["id"] if sub else None,
        "subtotal": amount,
        "taxes": [],
    }


def item_line(
    ctx: Context,
    invoice_id,
    sub: dict | None,
    item: dict,
    start: int,
    end: int,
    price: dict | None = None,
    quantity: int | None = None,
) -> dict:
    # a subscription in another currency than the price's own bills its currency_options amount
    price = in_currency(price or item["price"], sub["currency"] if sub else None, "price")
    quantity = item["quantity"] if quantity is None else quantity
    recurring = price["recurring"] or {}
    every = recurring.get("interval", "month")
    if recurring.get("interval_count", 1) > 1:
        every = f"every {recurring['interval_count']} {every}s"
    description = (
        f"{quantity} × {product_name(ctx, price)} "
        f"(at {format_invoice_amount(price['unit_amount'], price['currency'])} / {every})"
    )
    return new_line(
        ctx,
        invoice_id=invoice_id,
        sub=sub,
        item=item,
        price=price,
        quantity=quantity,
        amount=price["unit_amount"] * quantity,
        description=description,
        start=start,
        end=end,
    )


def resolve_items(ctx: Context, items: list[dict], param: str = "items") -> list[tuple]:
    resolved = []
    for i, spec in enumerate(items):
        where = f"{param}[{i}]"
        if spec.get("price"):
            price = load_price_param(ctx, spec["price"], f"{where}[price]")
        elif spec.get("price_data"):
            price = inline_price(ctx, spec["price_data"], f"{where}[price_data]", product_data_ok=False)
        else:
            raise errors.missing_param(f"{where}[price]")
        if price["type"] != "recurring":
            raise errors.invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=f"{where}[price]",
            )
        quantity = spec.get("quantity", 1)
        if quantity < 0:
            raise errors.invalid_request("Invalid non-negative integer", param=f"{where}[quantity]")
        resolved.append((price, quantity, spec.get("metadata")))
    currencies = {p["currency"] for p, _, _ in resolved}
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p, _, _ in resolved}
    if len(currencies) > 1:
        raise errors.invalid_request("All prices on a subscription must have the same currency.", param=param)
    if len(intervals) > 1:
        raise errors.invalid_request(
            "Currently, all prices on a subscription must have the same "
            "`recurring.interval` and `recurring.interval_count`.",
            param=param,
        )
    return resolved
