"""Completing a Checkout Session: :func:`complete_session` (what the hosted page's pay button
and ``POST /_sandbox/checkout/<id>/pay`` do) and the signals that finish a session afterwards.

Payment mode creates and confirms a PaymentIntent owned by the session (as Stripe does now: on
confirmation); subscription mode creates the customer if needed, the subscription and its first
invoice, and pays it. Whatever confirms the payment afterwards (the 3-D Secure challenge, a
delayed method settling), the ``payment_intent.changed`` and ``invoice.paid`` signals finish the
session: ``checkout.session.completed`` and, for delayed methods,
``checkout.session.async_payment_succeeded`` / ``_failed``.
"""

from __future__ import annotations

import copy

from .. import errors
from ..api import Context, listen
from . import payment_intents
from .billing import attach_payment_method, save_subscription
from .checkout import customer_details, expire_session_internal
from .customers import create_customer
from .payment_methods import attach_to_customer
from .subscriptions import create_subscription_internal


def _not_payable(session: dict) -> errors.StripeError:
    if session["status"] == "expired":
        message = "This Checkout Session has expired and can no longer be paid."
    else:
        message = "This Checkout Session is already complete; it cannot be paid again."
    return errors.invalid_request(message)


def _customer_for(ctx: Context, session: dict) -> dict:
    """Subscription mode (or ``customer_creation=always``) creates the customer on payment."""
    if session.get("customer"):
        return ctx.store.require(session["customer"])
    email = session.get("customer_email") or (session.get("customer_details") or {}).get("email")
    customer = create_customer(ctx, {"email": email} if email else {})
    session["customer"] = customer["id"]
    session["customer_details"] = customer_details(email)
    ctx.store.put(session)
    return customer


def complete_session(ctx: Context, session: dict, payment_method_id: str) -> dict:
    """Pay a session with ``payment_method_id`` (what the hosted page's pay button does).

    Returns the fresh session: ``complete`` when paid (or, for a delayed method, complete with
    ``payment_status=unpaid``), still ``open`` when the card needs 3-D Secure (the PaymentIntent
    is ``requires_action``). A decline raises Stripe's 402 card error (the attempt is kept);
    an expired or complete session raises a 400 and takes nothing.
    """
    session = ctx.store.require(session["id"])
    if session["status"] != "open":
        raise _not_payable(session)
    if session["expires_at"] <= ctx.now():
        expire_session_internal(ctx, session)
        raise _not_payable(ctx.store.require(session["id"]))
    mode = session["mode"]
    if mode == "payment":
        return _complete_payment(ctx, session, payment_method_id)
    if mode == "subscription":
        return _complete_subscription(ctx, session, payment_method_id)
    return _complete_setup(ctx, session, payment_method_id)


def _complete_payment(ctx: Context, session: dict, pm: str) -> dict:
    data = session["_sandbox"]["payment_intent_data"]
    if session.get("customer_creation") == "always" and not session.get("customer"):
        _customer_for(ctx, session)
    pi = ctx.store.get(session["payment_intent"]) if session.get("payment_intent") else None
    if pi is None or pi["status"] == "canceled":
        pi = payment_intents.create_intent(
            ctx,
            amount=session["amount_total"],
            currency=session["currency"],
            customer=session.get("customer"),
            metadata=data.get("metadata"),
            description=data.get("description"),
            setup_future_usage=data.get("setup_future_usage"),
            payment_method_types=session["payment_method_types"],
            owner=session["id"],
        )
        session["payment_intent"] = pi["id"]
        ctx.store.put(session)
    if pi["status"] in ("succeeded", "processing"):
        return ctx.store.require(session["id"])
    payment_intents.confirm_intent(
        ctx, pi, payment_method=pm, return_url=_return_url(ctx, session), raise_on_decline=True
    )
    return ctx.store.require(session["id"])


def _return_url(ctx: Context, session: dict) -> str:
    return f"{ctx.public_url()}/c/pay/{session['id']}"


def _attach_collected(ctx: Context, pm_id: str, customer_id: str) -> str:
    """The card the buyer typed on the page is attached to the customer, as Checkout does;
    a card that belongs to someone else is refused."""
    pm = ctx.store.get(pm_id)
    if pm is not None and pm.get("object") == "payment_method" and not pm.get("customer"):
        attach_to_customer(ctx, pm_id, customer_id)
    return attach_payment_method(ctx, pm_id, customer_id, "payment_method")


def _complete_subscription(ctx: Context, session: dict, pm: str) -> dict:
    sub = ctx.store.get(session["subscription"]) if session.get("subscription") else None
    if sub is None or sub["status"] != "incomplete":
        customer = _customer_for(ctx, session)
        pm_id = _attach_collected(ctx, pm, customer["id"])
        recurring = [
            (i["price"], i["quantity"], None)
            for i in session["_sandbox"]["line_items"]
            if i["price"]["type"] == "recurring"
        ]
        one_time = [
            (i["price"], i["quantity"]) for i in session["_sandbox"]["line_items"] if i["price"]["type"] != "recurring"
        ]
        data = session["_sandbox"]["subscription_data"]
        sub = create_subscription_internal(
            ctx,
            customer=customer,
            items=recurring,
            default_payment_method=pm_id,
            payment_behavior="default_incomplete",
            metadata=data.get("metadata"),
            description=data.get("description"),
            extra_lines=one_time,
            checkout_session=session["id"],
            currency=session["currency"],
        )
        session = ctx.store.get(session["id"]) or session
        session["customer"] = customer["id"]
        session["customer_details"] = session.get("customer_details") or customer_details(
            customer.get("email"), customer.get("name")
        )
        session["subscription"] = sub["id"]
        session["invoice"] = sub["latest_invoice"]
        ctx.store.put(session)
    else:
        pm_id = _attach_collected(ctx, pm, sub["customer"])
        before = copy.deepcopy(sub)
        sub["default_payment_method"] = pm_id
        save_subscription(ctx, sub, before)
    invoice = ctx.store.require(session["invoice"])
    if invoice["status"] == "open":
        pi = ctx.store.require(invoice["_sandbox"]["payment_intent"])
        payment_intents.confirm_intent(
            ctx, pi, payment_method=pm_id, return_url=_return_url(ctx, session), raise_on_decline=True
        )
    elif invoice["status"] == "paid":
        _finish(ctx, ctx.store.require(session["id"]), paid=True)
    return ctx.store.require(session["id"])


def _complete_setup(ctx: Context, session: dict, pm: str) -> dict:
    customer = _customer_for(ctx, session) if session.get("customer") or session.get("customer_email") else None
    if customer is not None:
        attach_payment_method(ctx, pm, customer["id"], "payment_method")
    session = ctx.store.require(session["id"]) if customer is None else session
    _finish(ctx, session, paid=False)
    return ctx.store.require(session["id"])


def _finish(ctx: Context, session: dict, *, paid: bool) -> None:
    if session["status"] != "open":
        return
    session["status"] = "complete"
    session["url"] = None
    if session["mode"] != "setup":
        session["payment_status"] = "paid" if paid else "unpaid"
    if session.get("customer") and not session.get("customer_details"):
        customer = ctx.store.get(session["customer"]) or {}
        session["customer_details"] = customer_details(
            customer.get("email"), customer.get("name"), customer.get("phone")
        )
    elif not session.get("customer_details"):
        session["customer_details"] = customer_details(session.get("customer_email"))
    ctx.store.cancel_jobs("checkout.session.expire", session["id"])
    ctx.store.put(session)
    ctx.emit("checkout.session.completed", session)


@listen("payment_intent.changed")
def _on_payment_intent(ctx: Context, pi: dict, previous_status=None, **_details) -> None:
    owner = (pi.get("_sandbox") or {}).get("owner")
    if not isinstance(owner, str) or not owner.startswith("cs_"):
        return
    session = ctx.store.get(owner)
    if session is None:
        return
    if session.get("customer") is None and pi.get("customer"):
        session["customer"] = pi["customer"]
    status = pi["status"]
    if status == "succeeded":
        if session["status"] == "open":
            _finish(ctx, session, paid=True)
        elif session["status"] == "complete" and session["payment_status"] == "unpaid":
            session["payment_status"] = "paid"
            ctx.store.put(session)
            ctx.emit("checkout.session.async_payment_succeeded", session)
    elif status == "processing" and session["status"] == "open":
        _finish(ctx, session, paid=False)
    elif (
        status == "requires_payment_method"
        and previous_status == "processing"
        and session["status"] == "complete"
        and session["payment_status"] == "unpaid"
    ):
        ctx.emit("checkout.session.async_payment_failed", session)


@listen("invoice.paid")
def _on_invoice_paid(ctx: Context, invoice: dict, **_details) -> None:
    session_id = (invoice.get("_sandbox") or {}).get("checkout_session")
    session = ctx.store.get(session_id) if session_id else None
    if session is not None and session["status"] == "open":
        _finish(ctx, session, paid=True)
