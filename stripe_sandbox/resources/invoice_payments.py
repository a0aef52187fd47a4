"""Invoice payments: finalize an invoice (with the PaymentIntent that collects it), pay it,
count its failed attempts, void it; ``POST /v1/invoices/<id>/pay``; list and retrieve invoice
payments.

An invoice reacts to its PaymentIntent through the ``payment_intent.changed`` signal, whoever
confirms it. It tells its subscription through ``subscription.invoice_paid`` /
``subscription.invoice_payment_failed`` (:mod:`.subscriptions` listens), then announces
``invoice.paid`` / ``invoice.payment_failed`` (Checkout listens).
"""

from __future__ import annotations

from .. import errors
from ..api import Context, endpoint, list_endpoint, listen, notify, retrieve_endpoint
from ..expand import includable
from ..primitives import new_id
from . import payment_intents
from .invoices import subscription_of

_PAYMENT_DESCRIPTIONS = {
    "subscription_create": "Subscription creation",
    "subscription_cycle": "Subscription update",
    "subscription_update": "Subscription update",
}


def _new_invoice_payment(invoice: dict, pi: dict, now: int) -> dict:
    """The invoice payment that ``pi`` (created on finalization) will make."""
    return {
        "id": new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": invoice["amount_due"],
        "created": now,
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"charge": None, "payment_intent": pi["id"], "payment_record": None, "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def _number(ctx: Context, invoice: dict) -> None:
    """Number the invoice from its customer's sequence (as Stripe does on finalization)."""
    customer = ctx.store.get(invoice["customer"])
    if customer and not customer.get("deleted"):
        sequence = customer.get("next_invoice_sequence", 1)
        invoice["number"] = f"{customer.get('invoice_prefix', 'SANDBOX')}-{sequence:04d}"
        customer["next_invoice_sequence"] = sequence + 1
        ctx.store.put(customer)


def finalize(ctx: Context, invoice: dict, *, setup_future_usage: str | None = "off_session") -> dict:
    """draft → open (numbered, hosted URL, a PaymentIntent for the amount due) or, for nothing
    to pay, straight to paid as Stripe does."""
    _number(ctx, invoice)
    now = ctx.now()
    invoice["status"] = "open"
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    invoice["hosted_invoice_url"] = f"{ctx.public_url()}/i/{invoice['id']}"
    if invoice["amount_due"] > 0:
        sub = subscription_of(ctx, invoice)
        pm_types = ((sub or {}).get("payment_settings") or {}).get("payment_method_types")
        pi = payment_intents.create_intent(
            ctx,
            amount=invoice["amount_due"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            description=_PAYMENT_DESCRIPTIONS.get(invoice["billing_reason"], "Invoice"),
            setup_future_usage=setup_future_usage,
            payment_method_types=pm_types,
            owner=invoice["id"],
        )
        payment = _new_invoice_payment(invoice, pi, now)
        ctx.store.put(payment)
        invoice["_sandbox"]["payment_intent"] = pi["id"]
        invoice["_sandbox"]["invoice_payment"] = payment["id"]
        ctx.store.put(invoice)
        ctx.emit("invoice.finalized", invoice)
    else:
        ctx.store.put(invoice)
        ctx.emit("invoice.finalized", invoice)
        mark_paid(ctx, invoice, None)
    return ctx.store.require(invoice["id"])


def mark_paid(ctx: Context, invoice: dict, pi: dict | None) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] == "paid":
        return
    now = ctx.now()
    if pi is not None:
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        next_payment_attempt=None,
        auto_advance=False,
    )
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
    sub = subscription_of(ctx, invoice)
    if sub is not None:
        notify("subscription.invoice_paid", ctx, sub, invoice=invoice, pi=pi)
    notify("invoice.paid", ctx, invoice)


def _payment_failed(ctx: Context, invoice: dict, pi: dict | None) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] != "open":
        return
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    invoice["next_payment_attempt"] = None
    ctx.store.put(invoice)
    ctx.emit("invoice.payment_failed", invoice)
    sub = subscription_of(ctx, invoice)
    if sub is not None:
        notify("subscription.invoice_payment_failed", ctx, sub, invoice=invoice)
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
        mark_paid(ctx, invoice, pi)
    elif pi["status"] == "requires_payment_method" and pi.get("last_payment_error"):
        _failed_attempt(ctx, invoice, pi)
    elif pi["status"] == "requires_action" and previous_status != "requires_action":
        ctx.emit("invoice.payment_action_required", invoice)


def default_payment_method(ctx: Context, invoice: dict, sub: dict | None) -> str | None:
    if invoice.get("default_payment_method"):
        return invoice["default_payment_method"]
    if sub is not None and sub.get("default_payment_method"):
        return sub["default_payment_method"]
    customer = ctx.store.get(invoice["customer"]) or {}
    return (customer.get("invoice_settings") or {}).get("default_payment_method")


def attempt_payment(
    ctx: Context, invoice: dict, *, payment_method: str | None, off_session: bool, raise_on_decline: bool
) -> dict:
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
        payment_intents.confirm_intent(
            ctx, pi, payment_method=payment_method, off_session=off_session, raise_on_decline=raise_on_decline
        )
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


def void(ctx: Context, invoice: dict) -> None:
    invoice = ctx.store.require(invoice["id"])
    if invoice["status"] != "open":
        return
    pi_id = invoice["_sandbox"].get("payment_intent")
    if pi_id:
        pi = ctx.store.get(pi_id)
        if pi and pi["status"] not in ("succeeded", "canceled", "processing"):
            payment_intents.cancel_intent(ctx, pi, reason="void_invoice")
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


def no_payment_method_error() -> errors.StripeError:
    return errors.invalid_request(
        "This customer has no attached payment source or default payment method. Please "
        "consider adding a default payment method. For more information, visit "
        "https://docs.stripe.com/billing/subscriptions/payment-methods-setting"
        "#payment-method-priority.",
        code="resource_missing",
    )


def payment_error(ctx: Context, invoice: dict) -> errors.StripeError:
    """The 402 a failed or unfinished charge answers (state rolled back: error_if_incomplete)."""
    pi = ctx.store.get(invoice["_sandbox"]["payment_intent"])
    error = (pi or {}).get("last_payment_error") or {}
    if pi and pi["status"] == "requires_action":
        return errors.StripeError(
            402,
            "card_error",
            "This payment requires additional user action before it can be "
            "completed successfully. Payment can be completed using the PaymentIntent "
            "associated with the invoice.",
            code="invoice_payment_intent_requires_action",
        )
    return errors.StripeError(
        402,
        "card_error",
        error.get("message") or "Your card was declined.",
        code=error.get("code") or "card_declined",
        decline_code=error.get("decline_code"),
    )


@includable("invoice", "payments")
def _payments(store, invoice: dict):
    payments = [p for p in store.all("invoice_payment") if p["invoice"] == invoice["id"]]
    return {
        "object": "list",
        "data": payments,
        "has_more": False,
        "total_count": len(payments),
        "url": f"/v1/invoice_payments?invoice={invoice['id']}",
    }


# --- endpoints -------------------------------------------------------------------------------


@endpoint(
    "POST",
    "/v1/invoices/<invoice_id>/pay",
    params="InvoicePayParams",
    supported=["payment_method", "off_session", "paid_out_of_band"],
)
def pay_invoice(ctx: Context, params: dict, invoice_id: str) -> dict:
    ctx.require_secret_key()
    invoice = ctx.load(invoice_id, "invoice")
    if invoice["status"] == "paid":
        raise errors.invalid_request("Invoice is already paid")
    if invoice["status"] in ("void", "uncollectible"):
        raise errors.invalid_request(f"This invoice can no longer be paid because it is {invoice['status']}.")
    if invoice["status"] == "draft":
        invoice = finalize(ctx, invoice)
        if invoice["status"] == "paid":
            return invoice
    if params.get("paid_out_of_band"):
        pi_id = invoice["_sandbox"].get("payment_intent")
        pi = ctx.store.get(pi_id) if pi_id else None
        if pi and pi["status"] not in ("succeeded", "canceled", "processing"):
            payment_intents.cancel_intent(ctx, pi)
        mark_paid(ctx, invoice, None)
        return ctx.store.require(invoice_id)
    sub = subscription_of(ctx, invoice)
    pm = params.get("payment_method") or default_payment_method(ctx, invoice, sub)
    if pm is None:
        raise errors.invalid_request(
            "There is no `default_payment_method` set on this Customer or Invoice. You must "
            "either set a default payment method, or pass one in via the `payment_method` "
            "parameter."
        )
    invoice = attempt_payment(
        ctx, invoice, payment_method=pm, off_session=params.get("off_session", True), raise_on_decline=True
    )
    if invoice["status"] == "open":
        pi = ctx.store.get(invoice["_sandbox"]["payment_intent"])
        if pi and pi["status"] == "requires_action":
            raise errors.StripeError(
                402,
                "card_error",
                "This payment requires additional user action before it "
                "can be completed successfully. Payment can be completed using the "
                "PaymentIntent associated with the invoice.",
                code="invoice_payment_intent_requires_action",
                store_result=True,
            )
    return invoice


# --- invoice payments --------------------------------------------------------------------------


def _paid_by(payments: list[dict], params: dict) -> list[dict]:
    """``payment={type, payment_intent}``: the invoice payments made that way."""
    if "payment" not in params:
        return payments
    wanted = params["payment"]
    kind = wanted.get("type")
    return [
        p
        for p in payments
        if p["payment"]["type"] == kind and p["payment"].get(kind) == wanted.get(kind, p["payment"].get(kind))
    ]


list_invoice_payments = list_endpoint(
    "/v1/invoice_payments",
    "invoice_payment",
    params="InvoicePaymentListParams",
    filters=("invoice", "status"),
    extra=("payment",),
    where=_paid_by,
)
retrieve_invoice_payment = retrieve_endpoint(
    "/v1/invoice_payments/<payment_id>",
    "invoice_payment",
    params="InvoicePaymentRetrieveParams",
    label="invoice payment",
)
