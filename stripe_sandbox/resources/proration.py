"""Price and quantity changes on a subscription: which items change, the proration lines
(credit for unused time on the old price, charge for the remaining time on the new one), and
``POST /v1/invoices/create_preview``, the invoice a change would produce (not saved)."""

from __future__ import annotations

import copy

from .. import errors
from ..api import Context, endpoint
from ..primitives import new_id
from .billing import (
    add_interval,
    format_date,
    inline_price,
    item_line,
    items_of,
    load_price_param,
    new_line,
    period_bounds,
    period_of,
    plan_of,
    product_name,
    resolve_items,
)
from .invoices import new_invoice
from .price_currencies import in_currency, options_of


def plan_change(ctx: Context, sub: dict, item_specs: list[dict], param: str = "items") -> list[tuple[dict, dict, int]]:
    """``[(item, new_price, new_quantity)]`` for each item the request changes."""
    by_id = {i["id"]: i for i in items_of(sub)}
    changes = []
    for n, spec in enumerate(item_specs):
        where = f"{param}[{n}]"
        if spec.get("deleted") or "clear_usage" in spec:
            raise errors.invalid_request(
                f"The parameter {where}[deleted] is valid at Stripe but not supported by the sandbox.",
                param=where,
                code="parameter_unsupported",
            )
        if not spec.get("id"):
            raise errors.invalid_request(
                "Adding items to a subscription is not supported by the sandbox; pass "
                f"{where}[id] to change an item's price or quantity.",
                param=f"{where}[id]",
                code="parameter_unsupported",
            )
        item = by_id.get(spec["id"])
        if item is None:
            raise errors.invalid_request(
                f"Subscription item {spec['id']} does not belong to subscription {sub['id']}.", param=f"{where}[id]"
            )
        if spec.get("price"):
            price = load_price_param(ctx, spec["price"], f"{where}[price]")
        elif spec.get("price_data"):
            price = inline_price(ctx, spec["price_data"], f"{where}[price_data]", product_data_ok=False)
        else:
            price = item["price"]
        if price["type"] != "recurring":
            raise errors.invalid_request(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=f"{where}[price]",
            )
        if sub["currency"] not in options_of(price):  # its own currency or one of its currency_options
            raise errors.invalid_request(
                "The price specified does not match the subscription's currency.", param=f"{where}[price]"
            )
        old = item["price"]["recurring"]
        if (price["recurring"]["interval"], price["recurring"]["interval_count"]) != (
            old["interval"],
            old["interval_count"],
        ):
            raise errors.invalid_request(
                "Changing a subscription's billing interval is not supported by the sandbox.",
                param=f"{where}[price]",
                code="parameter_unsupported",
            )
        changes.append((item, price, spec.get("quantity", item["quantity"])))
    return changes


def proration_date(ctx: Context, sub: dict, value) -> int:
    if value is None:
        return ctx.now()
    start, end = period_of(sub)
    if not start <= value <= end:
        raise errors.invalid_request(
            "The proration_date must be within the current billing period of the subscription.", param="proration_date"
        )
    return value


def proration_lines(ctx: Context, sub: dict, item: dict, new_price: dict, new_quantity: int, at: int) -> list[dict]:
    """Credit for unused time on the item's current price, charge for the remaining time on
    the new one, from ``at`` to the period end (to the second, as Stripe prorates)."""
    start, end = item["current_period_start"], item["current_period_end"]
    if not start <= at < end:
        return []
    share = (end - at) / (end - start)
    old_price, old_quantity = in_currency(item["price"], sub["currency"], "price"), item["quantity"]
    new_price = in_currency(new_price, sub["currency"], "price")
    credit = -round(old_price["unit_amount"] * old_quantity * share)
    charge = round(new_price["unit_amount"] * new_quantity * share)
    when = format_date(at)
    lines = []
    for wording, amount, price, quantity in (
        ("Unused", credit, old_price, old_quantity),
        ("Remaining", charge, new_price, new_quantity),
    ):
        if amount:
            lines.append(
                new_line(
                    ctx,
                    invoice_id=None,
                    sub=sub,
                    item=item,
                    price=price,
                    quantity=quantity,
                    amount=amount,
                    description=f"{wording} time on {quantity} × {product_name(ctx, price)} after {when}",
                    start=at,
                    end=end,
                    proration=True,
                    invoice_item=new_id("ii"),
                )
            )
    return lines


def change_items(
    ctx: Context, sub: dict, changes: list[tuple[dict, dict, int]], at: int, *, prorate: bool
) -> list[dict]:
    """Give ``sub``'s items their new price and quantity; the proration lines of the changes
    when ``prorate``."""
    prorations = []
    for item, price, quantity in changes:
        if prorate and (price["id"] != item["price"]["id"] or quantity != item["quantity"]):
            prorations += proration_lines(ctx, sub, item, price, quantity, at)
        item["price"], item["plan"], item["quantity"] = price, plan_of(price), quantity
    return prorations


# --- the upcoming invoice ------------------------------------------------------------------


@endpoint(
    "POST",
    "/v1/invoices/create_preview",
    params="InvoiceCreatePreviewParams",
    supported=[
        "customer",
        "subscription",
        "subscription_details[items]",
        "subscription_details[proration_behavior]",
        "subscription_details[proration_date]",
        "subscription_details[cancel_at_period_end]",
    ],
)
def create_preview(ctx: Context, params: dict) -> dict:
    """The invoice a change would produce, not saved: ``always_invoice`` → the prorations
    invoiced now; otherwise the next renewal invoice with its pending and new prorations."""
    ctx.require_secret_key()
    details = params.get("subscription_details") or {}
    preview_id = "upcoming_" + new_id("in")
    if params.get("subscription"):
        invoice = _preview_subscription(ctx, params, details, preview_id)
    else:
        invoice = _preview_first_invoice(ctx, params, details, preview_id)
    for line in invoice["lines"]["data"]:
        line["id"] = line["id"].replace("il_", "il_tmp_", 1)
    invoice.pop("_sandbox")
    invoice["lines"]["url"] = "/v1/invoices/upcoming/lines"
    return invoice


def _no_upcoming(customer_id: str) -> errors.StripeError:
    return errors.invalid_request(
        "No upcoming invoices for customer: " + customer_id, code="invoice_upcoming_none", status=404
    )


def _preview_subscription(ctx: Context, params: dict, details: dict, preview_id: str) -> dict:
    """An existing subscription's next invoice, with the changes in ``subscription_details``."""
    sub = ctx.load(params["subscription"], "subscription", param="subscription", status=400)
    if params.get("customer") and params["customer"] != sub["customer"]:
        raise errors.invalid_request("The subscription does not belong to this customer.", param="subscription")
    customer = ctx.store.require(sub["customer"])
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise _no_upcoming(sub["customer"])
    sub = copy.deepcopy(sub)
    behavior = details.get("proration_behavior", "create_prorations")
    prorations = []
    if details.get("items"):
        changes = plan_change(ctx, sub, details["items"], "subscription_details[items]")
        at = details.get("proration_date", ctx.now())
        start, end = period_of(sub)
        if not start <= at <= end:
            raise errors.invalid_request(
                "The proration_date must be within the current billing period of the subscription.",
                param="subscription_details[proration_date]",
            )
        prorations = change_items(
            ctx, sub, changes, at, prorate=behavior != "none" and sub["status"] in ("active", "past_due")
        )
    if behavior == "always_invoice" and details.get("items"):
        now = ctx.now()
        return new_invoice(
            ctx,
            customer=customer,
            sub=sub,
            billing_reason="subscription_update",
            lines=sub["_sandbox"]["pending"] + prorations,
            period_start=now,
            period_end=now,
            invoice_id=preview_id,
            currency=sub["currency"],
        )
    if details.get("cancel_at_period_end") or (
        sub["cancel_at_period_end"] and details.get("cancel_at_period_end") is not False
    ):
        raise _no_upcoming(sub["customer"])
    return _preview_renewal(ctx, customer, sub, prorations, preview_id)


def _preview_renewal(ctx: Context, customer: dict, sub: dict, prorations: list[dict], preview_id: str) -> dict:
    """The invoice the next period end will send: pending prorations, then the next period."""
    old_start, old_end = period_of(sub)
    start, end = period_bounds(sub, sub["_sandbox"]["period"] + 1)
    lines = sub["_sandbox"]["pending"] + prorations
    lines += [item_line(ctx, None, sub, item, start, end) for item in items_of(sub)]
    invoice = new_invoice(
        ctx,
        customer=customer,
        sub=sub,
        billing_reason="subscription_cycle",
        lines=lines,
        period_start=old_start,
        period_end=old_end,
        invoice_id=preview_id,
        currency=sub["currency"],
    )
    invoice["created"] = old_end
    invoice["next_payment_attempt"] = old_end
    return invoice


def _preview_first_invoice(ctx: Context, params: dict, details: dict, preview_id: str) -> dict:
    """The first invoice of a subscription the customer would start with these items."""
    if not params.get("customer"):
        raise errors.missing_param("customer")
    customer = ctx.load(params["customer"], "customer", param="customer", status=400)
    if not details.get("items"):
        raise _no_upcoming(customer["id"])
    items = resolve_items(ctx, details["items"], "subscription_details[items]")
    now = ctx.now()
    lines = []
    for price, quantity, _ in items:
        recurring = price["recurring"]
        end = add_interval(now, recurring["interval"], recurring["interval_count"], 1)
        fake_item = {"id": new_id("si"), "price": price, "quantity": quantity}
        lines.append(item_line(ctx, None, None, fake_item, now, end))
    return new_invoice(
        ctx,
        customer=customer,
        sub=None,
        billing_reason="subscription_create",
        lines=lines,
        period_start=now,
        period_end=now,
        invoice_id=preview_id,
    )
