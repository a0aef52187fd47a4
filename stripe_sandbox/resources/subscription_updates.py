"""Subscription updates: ``POST /v1/subscriptions/<id>`` -- fields, cancel at period end, price
and quantity changes with prorations (kept for the next invoice, or invoiced now with
``always_invoice``)."""

from __future__ import annotations

import copy

from .. import errors
from ..api import Context, apply_metadata, endpoint
from .billing import attach_payment_method, period_of, save_subscription
from .invoice_payments import attempt_payment, default_payment_method, finalize, payment_error
from .invoices import create_invoice
from .proration import change_items, plan_change, proration_date
from .subscriptions import ENDED

_SUB_UPDATE = [
    "items",
    "proration_behavior",
    "proration_date",
    "cancel_at_period_end",
    "default_payment_method",
    "metadata",
    "description",
    "payment_behavior",
    "off_session",
    "payment_settings[save_default_payment_method]",
    "cancellation_details",
]


@endpoint("POST", "/v1/subscriptions/<sub_id>", params="SubscriptionUpdateParams", supported=_SUB_UPDATE)
def update_subscription(ctx: Context, params: dict, sub_id: str) -> dict:
    ctx.require_secret_key()
    sub = ctx.load(sub_id, "subscription")
    if sub["status"] in ENDED:
        raise errors.invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param=next(iter(k for k in params if k != "expand"), None),
        )
    if params.get("payment_behavior") == "pending_if_incomplete":
        raise errors.invalid_request(
            "payment_behavior=pending_if_incomplete (pending updates) is valid at Stripe but not "
            "supported by the sandbox.",
            param="payment_behavior",
            code="parameter_unsupported",
        )
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
        sub["payment_settings"]["save_default_payment_method"] = params["payment_settings"][
            "save_default_payment_method"
        ]
    if "default_payment_method" in params:
        pm = params["default_payment_method"]
        sub["default_payment_method"] = (
            attach_payment_method(ctx, pm, sub["customer"], "default_payment_method") if pm else None
        )


def _cancel_at_period_end(ctx: Context, sub: dict, cancel: bool) -> None:
    if sub["status"] == "incomplete" and cancel:
        raise errors.invalid_request(
            "An incomplete subscription cannot be scheduled for cancellation.", param="cancel_at_period_end"
        )
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
    prorations = change_items(
        ctx, sub, changes, at, prorate=behavior != "none" and sub["status"] in ("active", "past_due", "trialing")
    )
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
    invoice = create_invoice(
        ctx,
        customer=customer,
        sub=sub,
        billing_reason="subscription_update",
        lines=lines,
        period_start=now,
        period_end=now,
    )
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
        invoice = attempt_payment(
            ctx, invoice, payment_method=pm, off_session=params.get("off_session", True), raise_on_decline=False
        )
        if behavior == "error_if_incomplete" and invoice["status"] != "paid":
            raise payment_error(ctx, invoice)
