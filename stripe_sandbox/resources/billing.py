"""Billing: subscriptions, subscription items, invoices, invoice payments, billing portal sessions.

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
confirms it (this module, the SDK, the browser); they announce ``invoice.paid`` and
``invoice.payment_failed`` signals for Checkout.
"""
from __future__ import annotations

import calendar
import copy
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app

from .. import errors
from ..api import Context, apply_metadata, created_filter, endpoint, list_response, listen, new_id, notify
from ..browser import browser
from ..expand import includable, public
from ..jobs import job

INCOMPLETE_EXPIRY = 23 * 3600
_LIST = ["limit", "starting_after", "ending_before"]


# --- small helpers ---------------------------------------------------------------------------

def base_url(ctx: Context) -> str:
    """The public address of the sandbox (jobs run without a request: remember the last one)."""
    if ctx.base_url:
        if ctx.store.meta("public_base_url") != ctx.base_url:
            ctx.store.set_meta("public_base_url", ctx.base_url)
        return ctx.base_url
    return ctx.store.meta("public_base_url", "") or ""


def bad_reference(kind: str, object_id: str, param: str) -> errors.StripeError:
    """A missing object named in a parameter: 400 (a missing object in the path is 404)."""
    return errors.invalid_request(f"No such {kind}: '{object_id}'", param=param,
                                  code="resource_missing")


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


def money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}.get(currency, "")
    if currency in ("jpy", "krw"):
        text = f"{abs(amount):,}"
    else:
        text = f"{abs(amount) / 100:,.2f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%-d %b %Y")


def _diff(before: dict, after: dict) -> dict:
    """Stripe's ``previous_attributes``: the old values of the top-level fields that changed."""
    old, new = public(before), public(after)
    return {k: old.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}


def product_name(ctx: Context, price: dict) -> str:
    product = ctx.store.get(price["product"]) or {}
    return product.get("name") or "Item"


def load_price_param(ctx: Context, price_id: str, param: str) -> dict:
    price = ctx.store.get(price_id) if isinstance(price_id, str) else None
    if price is None or price.get("object") != "price":
        raise bad_reference("price", price_id, param)
    if not price["active"]:
        raise errors.invalid_request("The price specified is inactive. This field only accepts "
                                     "active prices.", param=param)
    return price


def inline_price(ctx: Context, data: dict, param: str, *, product_data_ok: bool = True) -> dict:
    """A Price created from ``price_data`` (Stripe creates it, inactive, for this use only)."""
    if "currency" not in data:
        raise errors.missing_param(f"{param}[currency]")
    if "unit_amount" not in data:
        raise errors.missing_param(f"{param}[unit_amount]")
    if data["unit_amount"] < 0:
        raise errors.invalid_request("Invalid non-negative integer",
                                     param=f"{param}[unit_amount]")
    now = ctx.now()
    if data.get("product"):
        product = ctx.store.get(data["product"])
        if product is None or product.get("object") != "product" or product.get("deleted"):
            raise bad_reference("product", data["product"], f"{param}[product]")
    elif data.get("product_data") and product_data_ok:
        pd = data["product_data"]
        if not pd.get("name"):
            raise errors.missing_param(f"{param}[product_data][name]")
        product = {
            "id": new_id("prod"), "object": "product", "active": True, "created": now,
            "default_price": None, "description": pd.get("description"), "images": [],
            "livemode": False, "marketing_features": [], "metadata": {}, "name": pd["name"],
            "package_dimensions": None, "shippable": None, "statement_descriptor": None,
            "tax_code": None, "type": "service", "unit_label": None, "updated": now,
            "url": None,
        }
        apply_metadata(product, pd.get("metadata"))
        ctx.store.put(product)
    else:
        raise errors.missing_param(f"{param}[product_data]" if product_data_ok
                                   else f"{param}[product]")
    recurring = None
    if data.get("recurring"):
        recurring = {"interval": data["recurring"]["interval"],
                     "interval_count": data["recurring"].get("interval_count", 1),
                     "meter": None, "trial_period_days": None, "usage_type": "licensed"}
    currency = data["currency"].lower()
    price = {
        "id": new_id("price"), "object": "price", "active": False,
        "billing_scheme": "per_unit", "created": now, "currency": currency,
        "custom_unit_amount": None, "livemode": False, "lookup_key": None, "metadata": {},
        "nickname": None, "product": product["id"], "recurring": recurring,
        "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
        "type": "recurring" if recurring else "one_time", "unit_amount": data["unit_amount"],
        "unit_amount_decimal": str(data["unit_amount"]),
    }
    ctx.store.put(price)
    return price


def _plan(price: dict) -> dict:
    recurring = price["recurring"] or {}
    return {
        "id": price["id"], "object": "plan", "active": price["active"],
        "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit", "created": price["created"],
        "currency": price["currency"], "interval": recurring.get("interval", "month"),
        "interval_count": recurring.get("interval_count", 1), "livemode": False,
        "metadata": dict(price.get("metadata") or {}), "meter": None,
        "nickname": price.get("nickname"), "product": price["product"], "tiers_mode": None,
        "transform_usage": None, "trial_period_days": None, "usage_type": "licensed",
    }


# --- payments module (another engineer's internal API) ---------------------------------------

def _pi_module():
    from . import payment_intents
    return payment_intents


def _attach_pm(ctx: Context, pm_id: str, customer_id: str, param: str) -> str:
    """A payment method for a customer's subscription: stored PMs must be attached to the
    customer (as at Stripe); test tokens (``pm_card_visa``) are attached on the way."""
    pm = ctx.store.get(pm_id)
    if pm is not None and pm.get("object") == "payment_method":
        if pm.get("customer") != customer_id:
            raise errors.invalid_request(
                f"The customer does not have a payment method with the ID {pm_id}. The "
                "payment method must be attached to the customer.", param=param,
                code="resource_missing")
        return pm_id
    if not pm_id.startswith("pm_"):
        raise bad_reference("PaymentMethod", pm_id, param)
    from .payment_methods import attach_to_customer
    attached = attach_to_customer(ctx, pm_id, customer_id)
    return attached["id"] if isinstance(attached, dict) else pm_id


# --- subscription items ------------------------------------------------------------------------

def _new_item(ctx: Context, sub_id: str, price: dict, quantity: int, metadata,
              start: int, end: int) -> dict:
    item: dict[str, Any] = {
        "id": new_id("si"), "object": "subscription_item", "billing_thresholds": None,
        "created": ctx.now(), "current_period_end": end, "current_period_start": start,
        "discounts": [], "metadata": {}, "plan": _plan(price), "price": price,
        "quantity": quantity, "subscription": sub_id, "tax_rates": [],
    }
    apply_metadata(item, metadata)
    return item


def _items(sub: dict) -> list[dict]:
    return sub["items"]["data"]


def period_of(sub: dict) -> tuple[int, int]:
    item = _items(sub)[0]
    return item["current_period_start"], item["current_period_end"]


def _interval(sub: dict) -> tuple[str, int]:
    recurring = _items(sub)[0]["price"]["recurring"]
    return recurring["interval"], recurring["interval_count"]


def _period_bounds(sub: dict, n: int) -> tuple[int, int]:
    interval, count = _interval(sub)
    anchor = sub["billing_cycle_anchor"]
    return add_interval(anchor, interval, count, n), add_interval(anchor, interval, count, n + 1)


def _save_sub(ctx: Context, sub: dict, before: dict | None = None) -> dict:
    """Store the subscription (and its items), emitting ``customer.subscription.updated`` with
    ``previous_attributes`` when ``before`` is given and something changed."""
    ctx.store.put(sub)
    for item in _items(sub):
        ctx.store.put(item)
    if before is not None:
        previous = _diff(before, sub)
        if previous:
            ctx.emit("customer.subscription.updated", sub, previous)
    return sub


# --- invoices ----------------------------------------------------------------------------------

def _line(ctx: Context, *, invoice_id: str | None, sub: dict | None, item: dict | None,
          price: dict, quantity: int, amount: int, description: str, start: int, end: int,
          proration: bool = False, invoice_item: str | None = None) -> dict:
    if item is not None:
        parent = {"invoice_item_details": None, "type": "subscription_item_details",
                  "subscription_item_details": {
                      "invoice_item": invoice_item, "proration": proration,
                      "proration_details": {"credited_items": None},
                      "subscription": sub["id"] if sub else None,
                      "subscription_item": item["id"]}}
    else:
        parent = {"subscription_item_details": None, "type": "invoice_item_details",
                  "invoice_item_details": {
                      "invoice_item": invoice_item or new_id("ii"), "proration": proration,
                      "proration_details": {"credited_items": None},
                      "subscription": sub["id"] if sub else None}}
    return {
        "id": new_id("il"), "object": "line_item", "amount": amount,
        "currency": price["currency"], "description": description, "discount_amounts": [],
        "discountable": not proration, "discounts": [], "invoice": invoice_id,
        "livemode": False, "metadata": {}, "parent": parent,
        "period": {"end": end, "start": start}, "pretax_credit_amounts": [],
        "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                    "type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"]},
        "quantity": quantity, "subscription": sub["id"] if sub else None, "subtotal": amount,
        "taxes": [],
    }


def _item_line(ctx: Context, invoice_id, sub: dict | None, item: dict, start: int, end: int,
               price: dict | None = None, quantity: int | None = None) -> dict:
    price = price or item["price"]
    quantity = item["quantity"] if quantity is None else quantity
    recurring = price["recurring"] or {}
    every = recurring.get("interval", "month")
    if recurring.get("interval_count", 1) > 1:
        every = f"every {recurring['interval_count']} {every}s"
    description = (f"{quantity} × {product_name(ctx, price)} "
                   f"(at {money(price['unit_amount'], price['currency'])} / {every})")
    return _line(ctx, invoice_id=invoice_id, sub=sub, item=item, price=price, quantity=quantity,
                 amount=price["unit_amount"] * quantity, description=description,
                 start=start, end=end)


def _proration_lines(ctx: Context, sub: dict, item: dict, new_price: dict, new_quantity: int,
                     at: int) -> list[dict]:
    """Credit for unused time on the item's current price, charge for the remaining time on
    the new one, from ``at`` to the period end (to the second, as Stripe prorates)."""
    start, end = item["current_period_start"], item["current_period_end"]
    if not start <= at < end:
        return []
    share = (end - at) / (end - start)
    old_price, old_quantity = item["price"], item["quantity"]
    credit = -round(old_price["unit_amount"] * old_quantity * share)
    charge = round(new_price["unit_amount"] * new_quantity * share)
    when = _date(at)
    lines = []
    if credit:
        lines.append(_line(ctx, invoice_id=None, sub=sub, item=item, price=old_price,
                           quantity=old_quantity, amount=credit,
                           description=f"Unused time on {old_quantity} × "
                                       f"{product_name(ctx, old_price)} after {when}",
                           start=at, end=end, proration=True, invoice_item=new_id("ii")))
    if charge:
        lines.append(_line(ctx, invoice_id=None, sub=sub, item=item, price=new_price,
                           quantity=new_quantity, amount=charge,
                           description=f"Remaining time on {new_quantity} × "
                                       f"{product_name(ctx, new_price)} after {when}",
                           start=at, end=end, proration=True, invoice_item=new_id("ii")))
    return lines


def _new_invoice(ctx: Context, *, customer: dict, sub: dict | None, billing_reason: str,
                 lines: list[dict], period_start: int, period_end: int,
                 invoice_id: str | None = None, currency: str | None = None) -> dict:
    invoice_id = invoice_id or new_id("in")
    lines = copy.deepcopy(lines)
    for line in lines:
        line["invoice"] = invoice_id if not invoice_id.startswith("upcoming_") else None
    total = sum(line["amount"] for line in lines)
    currency = currency or (lines[0]["currency"] if lines else (sub or {}).get("currency", "usd"))
    parent = None
    if sub is not None:
        parent = {"quote_details": None, "type": "subscription_details",
                  "subscription_details": {"metadata": dict(sub["metadata"]),
                                           "subscription": sub["id"]}}
    invoice = {
        "id": invoice_id, "object": "invoice", "account_country": "US",
        "account_name": "Stripe Sandbox", "account_tax_ids": None,
        "amount_due": max(total, 0), "amount_overpaid": 0, "amount_paid": 0,
        "amount_remaining": max(total, 0), "amount_shipping": 0, "application": None,
        "attempt_count": 0, "attempted": False, "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                          "provider": None, "status": None},
        "automatically_finalizes_at": None, "billing_reason": billing_reason,
        "collection_method": "charge_automatically", "created": ctx.now(),
        "currency": currency, "custom_fields": None, "customer": customer["id"],
        "customer_account": None, "customer_address": customer.get("address"),
        "customer_email": customer.get("email"), "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"), "customer_shipping": None,
        "customer_tax_exempt": customer.get("tax_exempt", "none"), "customer_tax_ids": [],
        "default_payment_method": None, "default_source": None, "default_tax_rates": [],
        "description": None, "discounts": [], "due_date": None, "effective_at": None,
        "ending_balance": None, "footer": None, "from_invoice": None,
        "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None,
        "lines": {"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                  "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": None, "number": None,
        "on_behalf_of": None, "parent": parent,
        "payment_settings": {"default_mandate": None, "payment_method_options": None,
                             "payment_method_types": None},
        "period_end": period_end, "period_start": period_start,
        "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
        "receipt_number": None, "rendering": None, "shipping_cost": None,
        "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                               "paid_at": None, "voided_at": None},
        "subtotal": total, "subtotal_excluding_tax": total, "test_clock": None,
        "total": total, "total_discount_amounts": [], "total_excluding_tax": total,
        "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": None,
        "_sandbox": {"payment_intent": None, "invoice_payment": None},
    }
    return invoice


def _create_invoice(ctx: Context, **kwargs) -> dict:
    invoice = _new_invoice(ctx, **kwargs)
    ctx.store.put(invoice)
    ctx.emit("invoice.created", invoice)
    return invoice


def _finalize(ctx: Context, invoice: dict, *, setup_future_usage: str | None = "off_session"
              ) -> dict:
    """draft → open (numbered, hosted URL, a PaymentIntent for the amount due) or, for nothing
    to pay, straight to paid as Stripe does."""
    customer = ctx.store.get(invoice["customer"])
    if customer and not customer.get("deleted"):
        sequence = customer.get("next_invoice_sequence", 1)
        invoice["number"] = f"{customer.get('invoice_prefix', 'SANDBOX')}-{sequence:04d}"
        customer["next_invoice_sequence"] = sequence + 1
        ctx.store.put(customer)
    now = ctx.now()
    invoice["status"] = "open"
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    invoice["hosted_invoice_url"] = f"{base_url(ctx)}/i/{invoice['id']}"
    if invoice["amount_due"] > 0:
        sub = _subscription_of(ctx, invoice)
        description = {"subscription_create": "Subscription creation",
                       "subscription_cycle": "Subscription update",
                       "subscription_update": "Subscription update"}.get(
            invoice["billing_reason"], "Invoice")
        pm_types = ((sub or {}).get("payment_settings") or {}).get("payment_method_types")
        pi = _pi_module().create_intent(
            ctx, amount=invoice["amount_due"], currency=invoice["currency"],
            customer=invoice["customer"], description=description,
            setup_future_usage=setup_future_usage, payment_method_types=pm_types,
            owner=invoice["id"])
        payment = {
            "id": new_id("inpay"), "object": "invoice_payment", "amount_paid": None,
            "amount_requested": invoice["amount_due"], "created": now,
            "currency": invoice["currency"], "invoice": invoice["id"], "is_default": True,
            "livemode": False,
            "payment": {"charge": None, "payment_intent": pi["id"], "payment_record": None,
                        "type": "payment_intent"},
            "status": "open", "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        ctx.store.put(payment)
        invoice["_sandbox"]["payment_intent"] = pi["id"]
        invoice["_sandbox"]["invoice_payment"] = payment["id"]
        ctx.store.put(invoice)
        ctx.emit("invoice.finalized", invoice)
    else:
        ctx.store.put(invoice)
        ctx.emit("invoice.finalized", invoice)
        _mark_paid(ctx, invoice, None)
    return ctx.store.require(invoice["id"])


def _subscription_of(ctx: Context, invoice: dict) -> dict | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return ctx.store.get(details["subscription"]) if details.get("subscription") else None


def _mark_paid(ctx: Context, invoice: dict, pi: dict | None) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] == "paid":
        return
    now = ctx.now()
    if pi is not None:
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
    invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0,
                   next_payment_attempt=None, auto_advance=False)
    invoice["status_transitions"]["paid_at"] = now
    payment_id = invoice["_sandbox"].get("invoice_payment")
    if payment_id:
        payment = ctx.store.require(payment_id)
        payment["status"] = "paid"
        payment["amount_paid"] = payment["amount_requested"]
        payment["status_transitions"]["paid_at"] = now
        if pi is not None:
            payment["payment"]["charge"] = None
        ctx.store.put(payment)
    ctx.store.put(invoice)
    ctx.emit("invoice.paid", invoice)
    ctx.emit("invoice.payment_succeeded", invoice)
    sub = _subscription_of(ctx, invoice)
    if sub is not None:
        _after_invoice_paid(ctx, sub, invoice, pi)
    notify("invoice.paid", ctx, invoice)


def _open_invoices(ctx: Context, sub_id: str) -> list[dict]:
    return [i for i in ctx.store.all("invoice") if i["status"] == "open"
            and ((i.get("parent") or {}).get("subscription_details") or {})
            .get("subscription") == sub_id]


def _after_invoice_paid(ctx: Context, sub: dict, invoice: dict, pi: dict | None) -> None:
    before = copy.deepcopy(sub)
    if pi is not None and pi.get("payment_method") and \
            (sub.get("payment_settings") or {}).get("save_default_payment_method") == \
            "on_subscription":
        sub["default_payment_method"] = pi["payment_method"]
    if sub["status"] == "incomplete" and invoice["billing_reason"] == "subscription_create":
        sub["status"] = "active"
        ctx.store.cancel_jobs("subscription.incomplete_expire", sub["id"])
        _schedule_renewal(ctx, sub)
    elif sub["status"] in ("past_due", "unpaid") and not _open_invoices(ctx, sub["id"]):
        sub["status"] = "active"
    _save_sub(ctx, sub, before)


def _payment_failed(ctx: Context, invoice: dict, pi: dict | None) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] != "open":
        return
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    invoice["next_payment_attempt"] = None
    ctx.store.put(invoice)
    ctx.emit("invoice.payment_failed", invoice)
    sub = _subscription_of(ctx, invoice)
    if sub is not None and sub["status"] == "active" and \
            invoice["billing_reason"] != "subscription_create":
        before = copy.deepcopy(sub)
        sub["status"] = "past_due"
        _save_sub(ctx, sub, before)
    notify("invoice.payment_failed", ctx, invoice)


@listen("payment_intent.changed")
def _on_payment_intent(ctx: Context, pi: dict, previous_status=None, **_details) -> None:
    owner = (pi.get("_sandbox") or {}).get("owner")
    if not isinstance(owner, str) or not owner.startswith("in_"):
        return
    invoice = ctx.store.get(owner)
    if invoice is None or invoice["status"] not in ("open", "draft"):
        return
    if pi["status"] == "succeeded":
        _mark_paid(ctx, invoice, pi)
    elif pi["status"] == "requires_payment_method" and pi.get("last_payment_error"):
        _failed_attempt(ctx, invoice, pi)
    elif pi["status"] == "requires_action" and previous_status != "requires_action":
        ctx.emit("invoice.payment_action_required", invoice)


def _default_pm(ctx: Context, invoice: dict, sub: dict | None) -> str | None:
    if invoice.get("default_payment_method"):
        return invoice["default_payment_method"]
    if sub is not None and sub.get("default_payment_method"):
        return sub["default_payment_method"]
    customer = ctx.store.get(invoice["customer"]) or {}
    return (customer.get("invoice_settings") or {}).get("default_payment_method")


def attempt_payment(ctx: Context, invoice: dict, *, payment_method: str | None,
                    off_session: bool, raise_on_decline: bool) -> dict:
    """Charge an open invoice's PaymentIntent; the listener moves the invoice. Returns the
    fresh invoice. Without a payment method the attempt fails as Stripe's would."""
    invoice = ctx.store.require(invoice["id"])
    pi_id = invoice["_sandbox"].get("payment_intent")
    if invoice["status"] != "open" or not pi_id:
        return invoice
    if payment_method is None:
        _payment_failed(ctx, invoice, None)
        return ctx.store.require(invoice["id"])
    pi = ctx.store.require(pi_id)
    if pi["status"] in ("succeeded", "processing"):
        return ctx.store.require(invoice["id"])
    try:
        _pi_module().confirm_intent(ctx, pi, payment_method=payment_method,
                                    off_session=off_session, raise_on_decline=raise_on_decline)
    except errors.StripeError as exc:
        if exc.store_result:  # a decline: the attempt stands (and is answered 402)
            _failed_attempt(ctx, ctx.store.require(invoice["id"]), ctx.store.require(pi_id))
        raise
    _failed_attempt(ctx, ctx.store.require(invoice["id"]), ctx.store.require(pi_id))
    return ctx.store.require(invoice["id"])


def _failure_key(pi: dict) -> str:
    error = pi.get("last_payment_error") or {}
    return f"{pi.get('latest_charge')}|{error.get('code')}|{error.get('decline_code')}"


def _failed_attempt(ctx: Context, invoice: dict, pi: dict) -> None:
    """Count a failed attempt once, whether or not the PaymentIntent's status changed (a decline
    from ``requires_payment_method`` stays there, so no ``payment_intent.changed`` fires)."""
    if invoice is None or pi is None or invoice["status"] != "open":
        return
    if pi["status"] != "requires_payment_method" or not pi.get("last_payment_error"):
        return
    key = _failure_key(pi)
    if invoice["_sandbox"].get("last_failure") == key:
        return
    invoice["_sandbox"]["last_failure"] = key
    ctx.store.put(invoice)
    _payment_failed(ctx, invoice, pi)


def _void(ctx: Context, invoice: dict) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] != "open":
        return
    pi_id = invoice["_sandbox"].get("payment_intent")
    if pi_id:
        pi = ctx.store.get(pi_id)
        if pi and pi["status"] not in ("succeeded", "canceled", "processing"):
            _pi_module().cancel_intent(ctx, pi, reason="void_invoice")
    payment_id = invoice["_sandbox"].get("invoice_payment")
    now = ctx.now()
    if payment_id:
        payment = ctx.store.require(payment_id)
        payment["status"] = "canceled"
        payment["status_transitions"]["canceled_at"] = now
        ctx.store.put(payment)
    invoice = ctx.store.require(invoice["id"])
    invoice.update(status="void", amount_remaining=0, auto_advance=False)
    invoice["status_transitions"]["voided_at"] = now
    ctx.store.put(invoice)
    ctx.emit("invoice.voided", invoice)


@includable("invoice", "confirmation_secret")
def _confirmation_secret(store, invoice: dict):
    pi_id = (invoice.get("_sandbox") or {}).get("payment_intent")
    pi = store.get(pi_id) if pi_id else None
    if pi is None or invoice.get("status") != "open":
        return None
    return {"client_secret": pi["client_secret"], "type": "payment_intent"}


@includable("invoice", "payments")
def _payments(store, invoice: dict):
    payments = [p for p in store.all("invoice_payment") if p["invoice"] == invoice["id"]]
    return {"object": "list", "data": payments, "has_more": False, "total_count": len(payments),
            "url": f"/v1/invoice_payments?invoice={invoice['id']}"}


# --- subscriptions: create ---------------------------------------------------------------------

def _schedule_renewal(ctx: Context, sub: dict) -> None:
    ctx.store.cancel_jobs("subscription.period_end", sub["id"])
    end = period_of(sub)[1]
    ctx.store.schedule(end, "subscription.period_end", sub["id"], period_end=end)


def _resolve_items(ctx: Context, items: list[dict], param: str = "items") -> list[tuple]:
    resolved = []
    for i, spec in enumerate(items):
        where = f"{param}[{i}]"
        if spec.get("price"):
            price = load_price_param(ctx, spec["price"], f"{where}[price]")
        elif spec.get("price_data"):
            price = inline_price(ctx, spec["price_data"], f"{where}[price_data]",
                                 product_data_ok=False)
        else:
            raise errors.missing_param(f"{where}[price]")
        if price["type"] != "recurring":
            raise errors.invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.", param=f"{where}[price]")
        quantity = spec.get("quantity", 1)
        if quantity < 0:
            raise errors.invalid_request("Invalid non-negative integer",
                                         param=f"{where}[quantity]")
        resolved.append((price, quantity, spec.get("metadata")))
    currencies = {p["currency"] for p, _, _ in resolved}
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"])
                 for p, _, _ in resolved}
    if len(currencies) > 1:
        raise errors.invalid_request("All prices on a subscription must have the same currency.",
                                     param=param)
    if len(intervals) > 1:
        raise errors.invalid_request("Currently, all prices on a subscription must have the same "
                                     "`recurring.interval` and `recurring.interval_count`.",
                                     param=param)
    return resolved


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
        "currency": first_price["currency"], "customer": customer["id"],
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
    apply_metadata(sub, metadata)
    invoice_id = new_id("in")
    lines = [_item_line(ctx, invoice_id, sub, item, now, end) for item in sub_items]
    for price, quantity in extra_lines:  # one-time prices bought with the subscription
        lines.append(_line(ctx, invoice_id=invoice_id, sub=sub, item=None, price=price,
                           quantity=quantity, amount=price["unit_amount"] * quantity,
                           description=product_name(ctx, price), start=now, end=now))
    sub["latest_invoice"] = invoice_id
    _save_sub(ctx, sub)
    ctx.emit("customer.subscription.created", sub)
    invoice = _create_invoice(ctx, customer=customer, sub=sub,
                              billing_reason="subscription_create", lines=lines,
                              period_start=now, period_end=now, invoice_id=invoice_id)
    if checkout_session:
        invoice["_sandbox"]["checkout_session"] = checkout_session
        ctx.store.put(invoice)
    invoice = _finalize(ctx, invoice)
    sub = ctx.store.require(sub_id)
    if sub["status"] == "incomplete":
        ctx.store.schedule(now + INCOMPLETE_EXPIRY, "subscription.incomplete_expire", sub_id)
        if payment_behavior in ("allow_incomplete", "error_if_incomplete"):
            pm = _default_pm(ctx, invoice, sub)
            if pm is None and payment_behavior == "error_if_incomplete":
                raise _no_payment_method()
            if pm is not None:
                invoice = attempt_payment(ctx, invoice, payment_method=pm,
                                          off_session=off_session, raise_on_decline=False)
                if payment_behavior == "error_if_incomplete" and invoice["status"] != "paid":
                    raise _payment_error(ctx, invoice)
    return ctx.store.require(sub_id)


def _no_payment_method() -> errors.StripeError:
    return errors.invalid_request(
        "This customer has no attached payment source or default payment method. Please "
        "consider adding a default payment method. For more information, visit "
        "https://docs.stripe.com/billing/subscriptions/payment-methods-setting"
        "#payment-method-priority.", code="resource_missing")


def _payment_error(ctx: Context, invoice: dict) -> errors.StripeError:
    """The 402 a failed or unfinished charge answers (state rolled back: error_if_incomplete)."""
    pi = ctx.store.get(invoice["_sandbox"]["payment_intent"])
    error = (pi or {}).get("last_payment_error") or {}
    if pi and pi["status"] == "requires_action":
        return errors.StripeError(
            402, "card_error", "This payment requires additional user action before it can be "
            "completed successfully. Payment can be completed using the PaymentIntent "
            "associated with the invoice.", code="invoice_payment_intent_requires_action")
    return errors.StripeError(402, "card_error", error.get("message") or
                              "Your card was declined.", code=error.get("code") or
                              "card_declined", decline_code=error.get("decline_code"))


_SUB_CREATE = ["customer", "items", "default_payment_method", "payment_behavior",
               "off_session", "metadata", "description", "cancel_at_period_end",
               "payment_settings[save_default_payment_method]"]


@endpoint("POST", "/v1/subscriptions", params="SubscriptionCreateParams",
          supported=_SUB_CREATE)
def create_subscription(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "customer" not in params:
        raise errors.missing_param("customer")
    customer = ctx.store.get(params["customer"])
    if customer is None or customer.get("object") != "customer" or customer.get("deleted"):
        raise bad_reference("customer", params["customer"], "customer")
    if not params.get("items"):
        raise errors.missing_param("items")
    behavior = params.get("payment_behavior", "allow_incomplete")
    if behavior == "pending_if_incomplete":
        raise errors.invalid_request("payment_behavior=pending_if_incomplete is only for "
                                     "updates.", param="payment_behavior")
    items = _resolve_items(ctx, params["items"])
    pm = None
    if params.get("default_payment_method"):
        pm = _attach_pm(ctx, params["default_payment_method"], customer["id"],
                        "default_payment_method")
    base_url(ctx)
    return create_subscription_internal(
        ctx, customer=customer, items=items, default_payment_method=pm,
        payment_behavior=behavior, off_session=params.get("off_session", False),
        metadata=params.get("metadata"), description=params.get("description"),
        cancel_at_period_end=params.get("cancel_at_period_end", False),
        save_default_payment_method=(params.get("payment_settings") or {})
        .get("save_default_payment_method"))


@endpoint("GET", "/v1/subscriptions/<sub_id>", params="SubscriptionRetrieveParams")
def retrieve_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    return ctx.load(sub_id, "subscription")


@endpoint("GET", "/v1/subscriptions", params="SubscriptionListParams",
          supported=["customer", "status", "price", "created"] + _LIST)
def list_subscriptions(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    subs = ctx.store.all("subscription")
    status = params.get("status")
    if status is None:
        subs = [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        subs = [s for s in subs if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        subs = [s for s in subs if s["status"] == status]
    if "customer" in params:
        subs = [s for s in subs if s["customer"] == params["customer"]]
    if "price" in params:
        subs = [s for s in subs if any(i["price"]["id"] == params["price"] for i in _items(s))]
    subs = created_filter(subs, params.get("created"))
    return list_response(subs, "/v1/subscriptions", params)


# --- subscriptions: update ---------------------------------------------------------------------

def _plan_change(ctx: Context, sub: dict, item_specs: list[dict], param: str = "items"
                 ) -> list[tuple[dict, dict, int]]:
    """``[(item, new_price, new_quantity)]`` for each item the request changes."""
    by_id = {i["id"]: i for i in _items(sub)}
    changes = []
    for n, spec in enumerate(item_specs):
        where = f"{param}[{n}]"
        if spec.get("deleted") or "clear_usage" in spec:
            raise errors.invalid_request(f"The parameter {where}[deleted] is valid at Stripe but "
                                         "not supported by the sandbox.", param=where,
                                         code="parameter_unsupported")
        if not spec.get("id"):
            raise errors.invalid_request(
                "Adding items to a subscription is not supported by the sandbox; pass "
                f"{where}[id] to change an item's price or quantity.", param=f"{where}[id]",
                code="parameter_unsupported")
        item = by_id.get(spec["id"])
        if item is None:
            raise errors.invalid_request(
                f"Subscription item {spec['id']} does not belong to subscription {sub['id']}.",
                param=f"{where}[id]")
        if spec.get("price"):
            price = load_price_param(ctx, spec["price"], f"{where}[price]")
        elif spec.get("price_data"):
            price = inline_price(ctx, spec["price_data"], f"{where}[price_data]",
                                 product_data_ok=False)
        else:
            price = item["price"]
        if price["type"] != "recurring":
            raise errors.invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.", param=f"{where}[price]")
        if price["currency"] != sub["currency"]:
            raise errors.invalid_request("The price specified does not match the subscription's "
                                         "currency.", param=f"{where}[price]")
        old = item["price"]["recurring"]
        if (price["recurring"]["interval"], price["recurring"]["interval_count"]) != \
                (old["interval"], old["interval_count"]):
            raise errors.invalid_request(
                "Changing a subscription's billing interval is not supported by the sandbox.",
                param=f"{where}[price]", code="parameter_unsupported")
        changes.append((item, price, spec.get("quantity", item["quantity"])))
    return changes


def _proration_date(ctx: Context, sub: dict, value) -> int:
    if value is None:
        return ctx.now()
    start, end = period_of(sub)
    if not start <= value <= end:
        raise errors.invalid_request("The proration_date must be within the current billing "
                                     "period of the subscription.", param="proration_date")
    return value


_SUB_UPDATE = ["items", "proration_behavior", "proration_date", "cancel_at_period_end",
               "default_payment_method", "metadata", "description", "payment_behavior",
               "off_session", "payment_settings[save_default_payment_method]",
               "cancellation_details"]


@endpoint("POST", "/v1/subscriptions/<sub_id>", params="SubscriptionUpdateParams",
          supported=_SUB_UPDATE)
def update_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(sub_id, "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param=next(iter(k for k in params if k != "expand"), None))
    if params.get("payment_behavior") == "pending_if_incomplete":
        raise errors.invalid_request(
            "payment_behavior=pending_if_incomplete (pending updates) is valid at Stripe but not "
            "supported by the sandbox.", param="payment_behavior", code="parameter_unsupported")
    base_url(ctx)
    before = copy.deepcopy(sub)
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
        sub["default_payment_method"] = _attach_pm(ctx, pm, sub["customer"],
                                                   "default_payment_method") if pm else None
    if "cancel_at_period_end" in params:
        if sub["status"] == "incomplete" and params["cancel_at_period_end"]:
            raise errors.invalid_request("An incomplete subscription cannot be scheduled for "
                                         "cancellation.", param="cancel_at_period_end")
        sub["cancel_at_period_end"] = params["cancel_at_period_end"]
        sub["cancel_at"] = period_of(sub)[1] if params["cancel_at_period_end"] else None
        if params["cancel_at_period_end"]:
            sub["cancellation_details"]["reason"] = "cancellation_requested"
            sub["canceled_at"] = ctx.now()  # Stripe stamps the request, not the period end
        else:
            sub["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
            sub["canceled_at"] = None
    invoice_now = None
    if params.get("items"):
        behavior = params.get("proration_behavior", "create_prorations")
        changes = _plan_change(ctx, sub, params["items"])
        at = _proration_date(ctx, sub, params.get("proration_date"))
        prorations = []
        for item, price, quantity in changes:
            if behavior != "none" and sub["status"] in ("active", "past_due", "trialing") and \
                    (price["id"] != item["price"]["id"] or quantity != item["quantity"]):
                prorations += _proration_lines(ctx, sub, item, price, quantity, at)
            item["price"], item["plan"], item["quantity"] = price, _plan(price), quantity
        if behavior == "always_invoice":
            prorations = sub["_sandbox"]["pending"] + prorations
            sub["_sandbox"]["pending"] = []
            if prorations:
                invoice_now = prorations
        else:
            sub["_sandbox"]["pending"] += prorations
    _save_sub(ctx, sub, before)
    if invoice_now:
        _invoice_update_now(ctx, sub, invoice_now, params)
    return ctx.store.require(sub_id)


def _invoice_update_now(ctx: Context, sub: dict, lines: list[dict], params: dict) -> None:
    """``proration_behavior=always_invoice``: invoice the prorations now and charge them."""
    customer = ctx.store.get(sub["customer"])
    now = ctx.now()
    invoice = _create_invoice(ctx, customer=customer, sub=sub,
                              billing_reason="subscription_update", lines=lines,
                              period_start=now, period_end=now)
    sub = ctx.store.require(sub["id"])
    before = copy.deepcopy(sub)
    sub["latest_invoice"] = invoice["id"]
    _save_sub(ctx, sub, before)
    invoice = _finalize(ctx, invoice)
    if invoice["status"] == "open":
        pm = _default_pm(ctx, invoice, sub)
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior == "default_incomplete":
            return
        invoice = attempt_payment(ctx, invoice, payment_method=pm,
                                  off_session=params.get("off_session", True),
                                  raise_on_decline=False)
        if behavior == "error_if_incomplete" and invoice["status"] != "paid":
            raise _payment_error(ctx, invoice)


# --- subscriptions: cancel, clock jobs ---------------------------------------------------------

def cancel_subscription_internal(ctx: Context, sub: dict, *, reason: str,
                                 comment=None, feedback=None) -> dict:
    before = copy.deepcopy(sub)
    now = ctx.now()
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancel_at"] = sub["cancel_at"] if sub["cancel_at_period_end"] else None
    sub["cancellation_details"] = {"comment": comment or sub["cancellation_details"]["comment"],
                                   "feedback": feedback or
                                   sub["cancellation_details"]["feedback"],
                                   "reason": reason}
    sub["_sandbox"]["pending"] = []
    ctx.store.cancel_jobs("subscription.period_end", sub["id"])
    ctx.store.cancel_jobs("subscription.incomplete_expire", sub["id"])
    _save_sub(ctx, sub)
    del before
    for invoice in _open_invoices(ctx, sub["id"]):  # stop automatic collection
        invoice["auto_advance"] = False
        ctx.store.put(invoice)
    ctx.emit("customer.subscription.deleted", sub)
    return sub


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
        for invoice in _open_invoices(ctx, sub_id):
            _void(ctx, invoice)
        sub = ctx.store.require(sub_id)
    return cancel_subscription_internal(ctx, sub, reason="cancellation_requested",
                                        comment=details.get("comment"),
                                        feedback=details.get("feedback"))


@job("subscription.period_end")
def _period_end_job(ctx: Context, sub_id: str, data: dict) -> None:
    sub = ctx.store.get(sub_id)
    if sub is None or sub["status"] not in ("active", "past_due", "trialing") or \
            period_of(sub)[1] != data.get("period_end"):
        return
    if sub["cancel_at_period_end"]:
        cancel_subscription_internal(ctx, sub, reason="cancellation_requested")
        return
    renew(ctx, sub)


def renew(ctx: Context, sub: dict) -> dict:
    """Start the next period: invoice it (with pending prorations) and charge it off-session."""
    before = copy.deepcopy(sub)
    old_start, old_end = period_of(sub)
    sub["_sandbox"]["period"] += 1
    start, end = _period_bounds(sub, sub["_sandbox"]["period"])
    for item in _items(sub):
        item["current_period_start"], item["current_period_end"] = start, end
    invoice_id = new_id("in")
    lines = [dict(line) for line in sub["_sandbox"]["pending"]]
    lines += [_item_line(ctx, invoice_id, sub, item, start, end) for item in _items(sub)]
    sub["_sandbox"]["pending"] = []
    sub["latest_invoice"] = invoice_id
    _save_sub(ctx, sub, before)
    _schedule_renewal(ctx, sub)
    customer = ctx.store.get(sub["customer"])
    invoice = _create_invoice(ctx, customer=customer, sub=sub,
                              billing_reason="subscription_cycle", lines=lines,
                              period_start=old_start, period_end=old_end, invoice_id=invoice_id)
    invoice = _finalize(ctx, invoice)
    if invoice["status"] == "open":
        pm = _default_pm(ctx, invoice, ctx.store.get(sub["id"]))
        attempt_payment(ctx, invoice, payment_method=pm, off_session=True,
                        raise_on_decline=False)
    return ctx.store.require(sub["id"])


@job("subscription.incomplete_expire")
def _incomplete_expire_job(ctx: Context, sub_id: str, data: dict) -> None:
    sub = ctx.store.get(sub_id)
    if sub is None or sub["status"] != "incomplete":
        return
    for invoice in _open_invoices(ctx, sub_id):
        _void(ctx, invoice)
    sub = ctx.store.require(sub_id)
    before = copy.deepcopy(sub)
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = ctx.now()
    _save_sub(ctx, sub, before)


# --- subscription items --------------------------------------------------------------------------

@endpoint("GET", "/v1/subscription_items", params="SubscriptionItemListParams",
          supported=["subscription"] + _LIST)
def list_subscription_items(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    sub = ctx.store.get(params["subscription"])
    if sub is None or sub.get("object") != "subscription":
        raise bad_reference("subscription", params["subscription"], "subscription")
    return list_response(_items(sub), f"/v1/subscription_items?subscription={sub['id']}",
                         params)


@endpoint("GET", "/v1/subscription_items/<item_id>", params="SubscriptionItemRetrieveParams")
def retrieve_subscription_item(ctx: Context, params: dict, item_id: str) -> dict:
    ctx.require_secret_key()
    return ctx.load(item_id, "subscription_item", label="subscription item")


# --- invoices ----------------------------------------------------------------------------------

@endpoint("GET", "/v1/invoices/<invoice_id>", params="InvoiceRetrieveParams")
def retrieve_invoice(ctx: Context, params: dict, invoice_id: str) -> dict:
    ctx.require_secret_key()
    return ctx.load(invoice_id, "invoice")


@endpoint("GET", "/v1/invoices", params="InvoiceListParams",
          supported=["customer", "subscription", "status", "created"] + _LIST)
def list_invoices(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    invoices = ctx.store.all("invoice")
    if "customer" in params:
        invoices = [i for i in invoices if i["customer"] == params["customer"]]
    if "subscription" in params:
        invoices = [i for i in invoices if ((i.get("parent") or {}).get("subscription_details")
                                            or {}).get("subscription") == params["subscription"]]
    if "status" in params:
        invoices = [i for i in invoices if i["status"] == params["status"]]
    invoices = created_filter(invoices, params.get("created"))
    return list_response(invoices, "/v1/invoices", params)


@endpoint("GET", "/v1/invoices/<invoice_id>/lines", params="InvoiceListLinesParams",
          supported=_LIST)
def list_invoice_lines(ctx: Context, params: dict, invoice_id: str) -> dict:
    ctx.require_secret_key()
    invoice = ctx.load(invoice_id, "invoice")
    return list_response(invoice["lines"]["data"], f"/v1/invoices/{invoice_id}/lines", params)


@endpoint("POST", "/v1/invoices/<invoice_id>/pay", params="InvoicePayParams",
          supported=["payment_method", "off_session", "paid_out_of_band"])
def pay_invoice(ctx: Context, params: dict, invoice_id: str) -> dict:
    ctx.require_secret_key()
    invoice = ctx.load(invoice_id, "invoice")
    if invoice["status"] == "paid":
        raise errors.invalid_request("Invoice is already paid")
    if invoice["status"] in ("void", "uncollectible"):
        raise errors.invalid_request(f"This invoice can no longer be paid because it is "
                                     f"{invoice['status']}.")
    if invoice["status"] == "draft":
        invoice = _finalize(ctx, invoice)
        if invoice["status"] == "paid":
            return invoice
    if params.get("paid_out_of_band"):
        pi_id = invoice["_sandbox"].get("payment_intent")
        pi = ctx.store.get(pi_id) if pi_id else None
        if pi and pi["status"] not in ("succeeded", "canceled", "processing"):
            _pi_module().cancel_intent(ctx, pi)
        _mark_paid(ctx, invoice, None)
        return ctx.store.require(invoice_id)
    sub = _subscription_of(ctx, invoice)
    pm = params.get("payment_method") or _default_pm(ctx, invoice, sub)
    if pm is None:
        raise errors.invalid_request(
            "There is no `default_payment_method` set on this Customer or Invoice. You must "
            "either set a default payment method, or pass one in via the `payment_method` "
            "parameter.")
    invoice = attempt_payment(ctx, invoice, payment_method=pm,
                              off_session=params.get("off_session", True),
                              raise_on_decline=True)
    if invoice["status"] == "open":
        pi = ctx.store.get(invoice["_sandbox"]["payment_intent"])
        if pi and pi["status"] == "requires_action":
            raise errors.StripeError(
                402, "card_error", "This payment requires additional user action before it "
                "can be completed successfully. Payment can be completed using the "
                "PaymentIntent associated with the invoice.",
                code="invoice_payment_intent_requires_action", store_result=True)
    return invoice


# --- invoices: preview ---------------------------------------------------------------------------

@endpoint("POST", "/v1/invoices/create_preview", params="InvoiceCreatePreviewParams",
          supported=["customer", "subscription", "subscription_details[items]",
                     "subscription_details[proration_behavior]",
                     "subscription_details[proration_date]",
                     "subscription_details[cancel_at_period_end]"])
def create_preview(ctx: Context, params: dict) -> dict:
    """The invoice a change would produce, not saved: ``always_invoice`` → the prorations
    invoiced now; otherwise the next renewal invoice with its pending and new prorations."""
    ctx.require_secret_key()
    details = params.get("subscription_details") or {}
    preview_id = "upcoming_" + new_id("in")
    if params.get("subscription"):
        sub = ctx.store.get(params["subscription"])
        if sub is None or sub.get("object") != "subscription":
            raise bad_reference("subscription", params["subscription"], "subscription")
        if params.get("customer") and params["customer"] != sub["customer"]:
            raise errors.invalid_request("The subscription does not belong to this customer.",
                                         param="subscription")
        customer = ctx.store.require(sub["customer"])
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise errors.invalid_request(
                "No upcoming invoices for customer: " + sub["customer"],
                code="invoice_upcoming_none", status=404)
        sub = copy.deepcopy(sub)
        behavior = details.get("proration_behavior", "create_prorations")
        prorations = []
        if details.get("items"):
            changes = _plan_change(ctx, sub, details["items"], "subscription_details[items]")
            at = details.get("proration_date", ctx.now())
            start, end = period_of(sub)
            if not start <= at <= end:
                raise errors.invalid_request(
                    "The proration_date must be within the current billing period of the "
                    "subscription.", param="subscription_details[proration_date]")
            for item, price, quantity in changes:
                if behavior != "none" and sub["status"] in ("active", "past_due") and \
                        (price["id"] != item["price"]["id"] or quantity != item["quantity"]):
                    prorations += _proration_lines(ctx, sub, item, price, quantity, at)
                item["price"], item["plan"], item["quantity"] = price, _plan(price), quantity
        if behavior == "always_invoice" and details.get("items"):
            now = ctx.now()
            invoice = _new_invoice(ctx, customer=customer, sub=sub,
                                   billing_reason="subscription_update",
                                   lines=sub["_sandbox"]["pending"] + prorations,
                                   period_start=now, period_end=now, invoice_id=preview_id,
                                   currency=sub["currency"])
        else:
            if details.get("cancel_at_period_end") or \
                    (sub["cancel_at_period_end"] and details.get("cancel_at_period_end")
                     is not False):
                raise errors.invalid_request(
                    "No upcoming invoices for customer: " + sub["customer"],
                    code="invoice_upcoming_none", status=404)
            old_start, old_end = period_of(sub)
            start, end = _period_bounds(sub, sub["_sandbox"]["period"] + 1)
            lines = sub["_sandbox"]["pending"] + prorations
            lines += [_item_line(ctx, None, sub, item, start, end) for item in _items(sub)]
            invoice = _new_invoice(ctx, customer=customer, sub=sub,
                                   billing_reason="subscription_cycle", lines=lines,
                                   period_start=old_start, period_end=old_end,
                                   invoice_id=preview_id, currency=sub["currency"])
            invoice["created"] = old_end
            invoice["next_payment_attempt"] = old_end
    else:
        if not params.get("customer"):
            raise errors.missing_param("customer")
        found = ctx.store.get(params["customer"])
        if found is None or found.get("object") != "customer":
            raise bad_reference("customer", params["customer"], "customer")
        customer = found
        if not details.get("items"):
            raise errors.invalid_request("No upcoming invoices for customer: " + customer["id"],
                                         code="invoice_upcoming_none", status=404)
        items = _resolve_items(ctx, details["items"], "subscription_details[items]")
        now = ctx.now()
        lines = []
        for price, quantity, _ in items:
            recurring = price["recurring"]
            end = add_interval(now, recurring["interval"], recurring["interval_count"], 1)
            fake_item = {"id": new_id("si"), "price": price, "quantity": quantity}
            lines.append(_item_line(ctx, None, None, fake_item, now, end))
        invoice = _new_invoice(ctx, customer=customer, sub=None,
                               billing_reason="subscription_create", lines=lines,
                               period_start=now, period_end=now, invoice_id=preview_id)
    for line in invoice["lines"]["data"]:
        line["id"] = line["id"].replace("il_", "il_tmp_", 1)
    invoice.pop("_sandbox")
    invoice["lines"]["url"] = "/v1/invoices/upcoming/lines"
    return invoice


# --- invoice payments --------------------------------------------------------------------------

@endpoint("GET", "/v1/invoice_payments", params="InvoicePaymentListParams",
          supported=["invoice", "status", "payment", "created"] + _LIST)
def list_invoice_payments(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    payments = ctx.store.all("invoice_payment")
    if "invoice" in params:
        payments = [p for p in payments if p["invoice"] == params["invoice"]]
    if "status" in params:
        payments = [p for p in payments if p["status"] == params["status"]]
    if "payment" in params:
        wanted = params["payment"]
        payments = [p for p in payments if p["payment"]["type"] == wanted.get("type") and
                    p["payment"].get(wanted.get("type")) ==
                    wanted.get(wanted.get("type"), p["payment"].get(wanted.get("type")))]
    payments = created_filter(payments, params.get("created"))
    return list_response(payments, "/v1/invoice_payments", params)


@endpoint("GET", "/v1/invoice_payments/<payment_id>", params="InvoicePaymentRetrieveParams")
def retrieve_invoice_payment(ctx: Context, params: dict, payment_id: str) -> dict:
    ctx.require_secret_key()
    return ctx.load(payment_id, "invoice_payment", label="invoice payment")


# --- billing portal ------------------------------------------------------------------------------

@endpoint("POST", "/v1/billing_portal/sessions", params="billing_portal.SessionCreateParams",
          supported=["customer", "return_url", "locale"])
def create_portal_session(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    if "customer" not in params:
        raise errors.missing_param("customer")
    customer = ctx.store.get(params["customer"])
    if customer is None or customer.get("object") != "customer" or customer.get("deleted"):
        raise bad_reference("customer", params["customer"], "customer")
    configuration = ctx.store.meta("portal_configuration")
    if configuration is None:
        configuration = new_id("bpc")
        ctx.store.set_meta("portal_configuration", configuration)
    session_id = new_id("bps")
    session = {
        "id": session_id, "object": "billing_portal.session", "configuration": configuration,
        "created": ctx.now(), "customer": customer["id"], "customer_account": None,
        "flow": None, "livemode": False, "locale": params.get("locale"),
        "on_behalf_of": None, "return_url": params.get("return_url"),
        "url": f"{base_url(ctx)}/p/session/{session_id}",
    }
    ctx.store.put(session)
    return session


# --- sandbox pages: hosted invoice, billing portal -----------------------------------------------

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem
auto;padding:0 1rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid
#ddd;padding:.4rem;text-align:left}}.note{{color:#666;font-size:.9rem}}</style></head><body>
<p class="note">Stripe sandbox (test mode)</p>{body}</body></html>"""


def _store():
    from ..app import sandbox_of
    return sandbox_of(current_app).store


@browser.get("/i/<invoice_id>")
def hosted_invoice(invoice_id: str):
    store = _store()
    invoice = store.get(invoice_id)
    if invoice is None or invoice.get("object") != "invoice":
        abort(404)
    e = html.escape
    rows = "".join(f"<tr><td>{e(line['description'] or '')}</td>"
                   f"<td>{e(money(line['amount'], line['currency']))}</td></tr>"
                   for line in invoice["lines"]["data"])
    body = (f"<h1>Invoice {e(invoice.get('number') or invoice['id'])}</h1>"
            f"<p>Status: <strong id=\"status\">{e(invoice['status'])}</strong></p>"
            f"<p>Billed to {e(invoice.get('customer_email') or invoice['customer'])}</p>"
            f"<table><tr><th>Description</th><th>Amount</th></tr>{rows}</table>"
            f"<p>Amount due: {e(money(invoice['amount_due'], invoice['currency']))}<br>"
            f"Amount paid: {e(money(invoice['amount_paid'], invoice['currency']))}<br>"
            f"Amount remaining: {e(money(invoice['amount_remaining'], invoice['currency']))}</p>")
    return _PAGE.format(title=f"Invoice {e(invoice['id'])}", body=body)


@browser.get("/p/session/<session_id>")
def portal_page(session_id: str):
    store = _store()
    session = store.get(session_id)
    if session is None or session.get("object") != "billing_portal.session":
        abort(404)
    e = html.escape
    subs = [s for s in store.all("subscription") if s["customer"] == session["customer"]]
    rows = ""
    for sub in subs:
        item = sub["items"]["data"][0]
        name = (store.get(item["price"]["product"]) or {}).get("name", "")
        renews = _date(item["current_period_end"])
        amount = money(item["price"]["unit_amount"], sub["currency"])
        rows += (f"<tr><td>{e(name)}</td><td>{e(amount)}</td><td>{e(sub['status'])}"
                 f"{' (cancels at period end)' if sub['cancel_at_period_end'] else ''}</td>"
                 f"<td>{e(renews)}</td></tr>")
    invoices = [i for i in store.all("invoice") if i["customer"] == session["customer"]]
    inv_rows = "".join(
        f"<tr><td><a href=\"/i/{e(i['id'])}\">{e(i.get('number') or i['id'])}</a></td>"
        f"<td>{e(money(i['total'], i['currency']))}</td><td>{e(i['status'])}</td></tr>"
        for i in invoices)
    back = (f"<p><a id=\"return\" href=\"{e(session['return_url'])}\">Return to the store</a>"
            "</p>" if session.get("return_url") else "")
    body = (f"<h1>Billing</h1>{back}<h2>Subscriptions</h2><table><tr><th>Plan</th><th>Price"
            f"</th><th>Status</th><th>Current period ends</th></tr>{rows}</table>"
            f"<h2>Invoices</h2><table><tr><th>Number</th><th>Total</th><th>Status</th></tr>"
            f"{inv_rows}</table>")
    return _PAGE.format(title="Billing portal", body=body)
