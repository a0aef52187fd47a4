"""Invoices: build (:func:`new_invoice`), retrieve, list, list lines, and which subscription
billed one. Finalizing, paying, failing and voiding them (and invoice payments) are in
:mod:`.invoice_payments`.
"""

from __future__ import annotations

import copy

from ..api import LIST_PARAMS, Context, endpoint, list_endpoint, list_response, retrieve_endpoint
from ..expand import includable
from ..primitives import new_id


def _own_lines(lines: list[dict], invoice_id: str) -> list[dict]:
    """Copies of ``lines`` that point at this invoice (a preview's lines point nowhere)."""
    lines = copy.deepcopy(lines)
    for line in lines:
        line["invoice"] = invoice_id if not invoice_id.startswith("upcoming_") else None
    return lines


def _parent(sub: dict | None) -> dict | None:
    if sub is None:
        return None
    return {
        "quote_details": None,
        "type": "subscription_details",
        "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
    }


def _account(ctx: Context) -> dict:
    return {"account_country": "US", "account_name": ctx.merchant_name or "Stripe Sandbox", "account_tax_ids": None}


def _amounts(total: int) -> dict:
    return {
        "amount_due": max(total, 0),
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": max(total, 0),
        "amount_shipping": 0,
    }


def _collection(billing_reason: str) -> dict:
    """How a new invoice is collected: automatically, not attempted yet."""
    return {
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
    }


def _customer_fields(customer: dict) -> dict:
    """The customer's details as the invoice copies them."""
    return {
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer.get("address"),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": None,
        "customer_tax_exempt": customer.get("tax_exempt", "none"),
        "customer_tax_ids": [],
    }


def _draft_defaults() -> dict:
    """What a draft leaves empty (finalizing sets ``effective_at`` and ``hosted_invoice_url``)."""
    return {
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
    }


def _lines_list(invoice_id: str, lines: list[dict]) -> dict:
    return {
        "object": "list",
        "data": lines,
        "has_more": False,
        "total_count": len(lines),
        "url": f"/v1/invoices/{invoice_id}/lines",
    }


def _draft_status() -> dict:
    return {
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
    }


def _totals(total: int) -> dict:
    """The totals (no discounts, taxes or credits in the sandbox), ``test_clock`` among them
    in Stripe's alphabetical order."""
    return {
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
    }


def new_invoice(
    ctx: Context,
    *,
    customer: dict,
    sub: dict | None,
    billing_reason: str,
    lines: list[dict],
    period_start: int,
    period_end: int,
    invoice_id: str | None = None,
    currency: str | None = None,
) -> dict:
    """A draft invoice of ``lines`` (not stored: :func:`create_invoice` stores it)."""
    invoice_id = invoice_id or new_id("in")
    lines = _own_lines(lines, invoice_id)
    total = sum(line["amount"] for line in lines)
    currency = currency or (lines[0]["currency"] if lines else (sub or {}).get("currency", "usd"))
    return {
        "id": invoice_id,
        "object": "invoice",
        **_account(ctx),
        **_amounts(total),
        **_collection(billing_reason),
        "created": ctx.now(),
        "currency": currency,
        "custom_fields": None,
        **_customer_fields(customer),
        **_draft_defaults(),
        "lines": _lines_list(invoice_id, lines),
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": _parent(sub),
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        **_draft_status(),
        **_totals(total),
        "webhooks_delivered_at": None,
        "_sandbox": {"payment_intent": None, "invoice_payment": None},
    }


def create_invoice(ctx: Context, **kwargs) -> dict:
    invoice = new_invoice(ctx, **kwargs)
    ctx.store.put(invoice)
    ctx.emit("invoice.created", invoice)
    return invoice


def subscription_id_of(invoice: dict) -> str | None:
    """The id of the subscription that billed ``invoice`` (None for a one-off invoice)."""
    return ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")


def subscription_of(ctx: Context, invoice: dict) -> dict | None:
    sub_id = subscription_id_of(invoice)
    return ctx.store.get(sub_id) if sub_id else None


def open_invoices(ctx: Context, sub_id: str) -> list[dict]:
    return [i for i in ctx.store.all("invoice") if i["status"] == "open" and subscription_id_of(i) == sub_id]


@includable("invoice", "confirmation_secret")
def _confirmation_secret(store, invoice: dict):
    pi_id = (invoice.get("_sandbox") or {}).get("payment_intent")
    pi = store.get(pi_id) if pi_id else None
    if pi is None or invoice.get("status") != "open":
        return None
    return {"client_secret": pi["client_secret"], "type": "payment_intent"}


# --- endpoints -------------------------------------------------------------------------------

retrieve_invoice = retrieve_endpoint("/v1/invoices/<invoice_id>", "invoice", params="InvoiceRetrieveParams")


def _of_subscription(invoices: list[dict], params: dict) -> list[dict]:
    if "subscription" not in params:
        return invoices
    return [i for i in invoices if subscription_id_of(i) == params["subscription"]]


list_invoices = list_endpoint(
    "/v1/invoices",
    "invoice",
    params="InvoiceListParams",
    filters=("customer", "status"),
    extra=("subscription",),
    where=_of_subscription,
)


@endpoint("GET", "/v1/invoices/<invoice_id>/lines", params="InvoiceListLinesParams", supported=LIST_PARAMS)
def list_invoice_lines(ctx: Context, params: dict, invoice_id: str) -> dict:
    ctx.require_secret_key()
    invoice = ctx.load(invoice_id, "invoice")
    return list_response(invoice["lines"]["data"], f"/v1/invoices/{invoice_id}/lines", params)
