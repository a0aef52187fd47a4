"""What the sandbox clock does to subscriptions: at a period end, cancel one set to cancel or
renew it (invoice the next period with its pending prorations and charge it off-session); after
23 hours, expire one whose first invoice was never paid. Also ends a subscription
(:func:`cancel_subscription_internal`), which stops these jobs."""

from __future__ import annotations

import copy

from ..api import Context
from ..jobs import job
from ..primitives import new_id
from .billing import item_line, items_of, period_bounds, period_of, save_subscription
from .invoice_payments import attempt_payment, default_payment_method, finalize, void
from .invoices import create_invoice, open_invoices


def schedule_renewal(ctx: Context, sub: dict) -> None:
    ctx.store.cancel_jobs("subscription.period_end", sub["id"])
    end = period_of(sub)[1]
    ctx.store.schedule(end, "subscription.period_end", sub["id"], period_end=end)


def cancel_subscription_internal(ctx: Context, sub: dict, *, reason: str, comment=None, feedback=None) -> dict:
    """End ``sub`` now (no more renewals; its open invoices stop collecting)."""
    now = ctx.now()
    sub["status"] = "canceled"
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["ended_at"] = now
    sub["cancel_at"] = sub["cancel_at"] if sub["cancel_at_period_end"] else None
    sub["cancellation_details"] = {
        "comment": comment or sub["cancellation_details"]["comment"],
        "feedback": feedback or sub["cancellation_details"]["feedback"],
        "reason": reason,
    }
    sub["_sandbox"]["pending"] = []
    ctx.store.cancel_jobs("subscription.period_end", sub["id"])
    ctx.store.cancel_jobs("subscription.incomplete_expire", sub["id"])
    save_subscription(ctx, sub)
    for invoice in open_invoices(ctx, sub["id"]):  # stop automatic collection
        invoice["auto_advance"] = False
        ctx.store.put(invoice)
    ctx.emit("customer.subscription.deleted", sub)
    return sub


@job("subscription.period_end")
def _period_end_job(ctx: Context, sub_id: str, data: dict) -> None:
    sub = ctx.store.get(sub_id)
    if (
        sub is None
        or sub["status"] not in ("active", "past_due", "trialing")
        or period_of(sub)[1] != data.get("period_end")
    ):
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
    start, end = period_bounds(sub, sub["_sandbox"]["period"])
    for item in items_of(sub):
        item["current_period_start"], item["current_period_end"] = start, end
    invoice_id = new_id("in")
    lines = [dict(line) for line in sub["_sandbox"]["pending"]]
    lines += [item_line(ctx, invoice_id, sub, item, start, end) for item in items_of(sub)]
    sub["_sandbox"]["pending"] = []
    sub["latest_invoice"] = invoice_id
    save_subscription(ctx, sub, before)
    schedule_renewal(ctx, sub)
    customer = ctx.store.get(sub["customer"])
    invoice = create_invoice(
        ctx,
        customer=customer,
        sub=sub,
        billing_reason="subscription_cycle",
        lines=lines,
        period_start=old_start,
        period_end=old_end,
        invoice_id=invoice_id,
    )
    invoice = finalize(ctx, invoice)
    if invoice["status"] == "open":
        pm = default_payment_method(ctx, invoice, ctx.store.get(sub["id"]))
        attempt_payment(ctx, invoice, payment_method=pm, off_session=True, raise_on_decline=False)
    return ctx.store.require(sub["id"])


@job("subscription.incomplete_expire")
def _incomplete_expire_job(ctx: Context, sub_id: str, data: dict) -> None:
    sub = ctx.store.get(sub_id)
    if sub is None or sub["status"] != "incomplete":
        return
    for invoice in open_invoices(ctx, sub_id):
        void(ctx, invoice)
    sub = ctx.store.require(sub_id)
    before = copy.deepcopy(sub)
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = ctx.now()
    save_subscription(ctx, sub, before)
