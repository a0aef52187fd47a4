"""Browser pages of the billing resources: the hosted invoice page (an invoice's
``hosted_invoice_url``, ``/i/<invoice_id>``) and the billing portal (a portal session's
``url``, ``/p/session/<session_id>``). Templates: ``templates/sandbox/invoice.html`` and
``portal.html`` (autoescaped)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from .money import format_invoice_amount
from .resources.billing import format_date
from .resources.price_currencies import options_of
from .runtime import sandbox_of

billing_pages = Blueprint("sandbox_billing_pages", __name__)


def _stored(object_id: str, object_type: str) -> dict:
    obj = sandbox_of().store.get(object_id)
    if obj is None or obj.get("object") != object_type:
        abort(404)
    return obj


@billing_pages.get("/i/<invoice_id>")
def hosted_invoice(invoice_id: str):
    invoice = _stored(invoice_id, "invoice")
    currency = invoice["currency"]
    lines = [
        {"description": line["description"] or "", "amount": format_invoice_amount(line["amount"], line["currency"])}
        for line in invoice["lines"]["data"]
    ]
    return render_template(
        "sandbox/invoice.html",
        invoice=invoice,
        lines=lines,
        amount_due=format_invoice_amount(invoice["amount_due"], currency),
        amount_paid=format_invoice_amount(invoice["amount_paid"], currency),
        amount_remaining=format_invoice_amount(invoice["amount_remaining"], currency),
    )


@billing_pages.get("/p/session/<session_id>")
def portal_page(session_id: str):
    session = _stored(session_id, "billing_portal.session")
    store = sandbox_of().store
    subscriptions = []
    for sub in store.all("subscription"):
        if sub["customer"] != session["customer"]:
            continue
        item = sub["items"]["data"][0]
        subscriptions.append(
            {
                "name": (store.get(item["price"]["product"]) or {}).get("name", ""),
                "amount": format_invoice_amount(options_of(item["price"])[sub["currency"]], sub["currency"]),
                "status": sub["status"],
                "cancels": sub["cancel_at_period_end"],
                "renews": format_date(item["current_period_end"]),
            }
        )
    invoices = [
        {
            "id": i["id"],
            "number": i.get("number") or i["id"],
            "status": i["status"],
            "total": format_invoice_amount(i["total"], i["currency"]),
        }
        for i in store.all("invoice")
        if i["customer"] == session["customer"]
    ]
    return render_template(
        "sandbox/portal.html", subscriptions=subscriptions, invoices=invoices, return_url=session.get("return_url")
    )
