"""One payment attempt on a PaymentIntent: charge the PaymentMethod as its test card (or test
bank account) says -- succeed, decline, ask for 3-D Secure, or go ``processing`` until the sandbox
clock settles a bank debit (:data:`DELAYED_FAILURES`) -- and tell the PaymentIntent's owner.

Every status change calls ``notify("payment_intent.changed", ctx, pi, previous_status=…)``.
"""

from __future__ import annotations

from .. import cards, errors
from ..api import Context, notify
from ..jobs import job
from ..primitives import public
from . import charges
from .intents import next_action
from .payment_methods import card_of, delayed_outcome, is_delayed, is_set_up, mark_set_up

SETTLE_DELAY = 5  # seconds of sandbox time a delayed method stays processing
#: a failed bank debit's code -> the message Stripe gives
DELAYED_FAILURES = {
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "no_account": "The customer's bank account could not be located.",
    "account_closed": "The customer's bank account has been closed.",
    "debit_not_authorized": "The customer has notified their bank that this payment was unauthorized.",
}
AUTH_FAILURE_MESSAGE = cards.MESSAGES["payment_intent_authentication_failure"]


_PAST = {"confirm": "confirmed", "cancel": "canceled", "authenticate": "authenticated"}


def unexpected(pi: dict, action: str, allowed: tuple[str, ...]) -> errors.StripeError:
    exc = errors.invalid_request(
        f"You cannot {action} this PaymentIntent because it has a status of {pi['status']}. "
        f"Only a PaymentIntent with one of the following statuses may be "
        f"{_PAST.get(action, action + 'ed')}: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
    )
    exc.extra["payment_intent"] = public(pi)
    return exc


def set_status(ctx: Context, pi: dict, status: str) -> str:
    previous = pi["status"]
    pi["status"] = status
    return previous


def changed(ctx: Context, pi: dict, previous_status: str, *, attempt_failed: bool = False) -> None:
    """Tell owners (invoices, Checkout Sessions) about a new status -- or a failed attempt,
    which may leave the status as it was (a decline from ``requires_payment_method``)."""
    ctx.store.put(pi)
    if pi["status"] != previous_status or attempt_failed:
        notify("payment_intent.changed", ctx, pi, previous_status=previous_status)


def attempt(ctx: Context, pi: dict, pm: dict, *, raise_on_decline: bool) -> dict:
    """One payment attempt with ``pm`` (after confirm, or after 3-D Secure)."""
    if is_delayed(pm):
        return _start_processing(ctx, pi, pm)
    decision = cards.charge_decision(
        card_of(pm),
        off_session=pi["_sandbox"]["off_session"],
        set_up=is_set_up(pm),
        authenticated=pi["_sandbox"]["authenticated"],
    )
    if decision.action == "authenticate":
        previous = set_status(ctx, pi, "requires_action")
        pi["next_action"] = next_action(ctx, pi)
        ctx.store.put(pi)
        ctx.emit("payment_intent.requires_action", pi)
        changed(ctx, pi, previous)
        return pi
    if decision.action == "succeed":
        return _succeed(ctx, pi, pm)
    return _decline(ctx, pi, pm, decision, raise_on_decline=raise_on_decline)


def _save_for_later(ctx: Context, pi: dict, pm: dict) -> dict:
    """``setup_future_usage``: attach the PaymentMethod to the customer and mark it set up."""
    if pi.get("setup_future_usage") and pi.get("customer"):
        if pm.get("customer") != pi["customer"]:
            pm = _attach_quietly(ctx, pm, pi["customer"])
        pm = mark_set_up(ctx, pm)
    elif not pm.get("customer"):
        pm.setdefault("_sandbox", {})["used_once"] = True
        ctx.store.put(pm)
    return pm


def _attach_quietly(ctx: Context, pm: dict, customer_id: str) -> dict:
    """Attach without re-verifying (the successful payment was the verification)."""
    if pm.get("customer"):
        return pm
    pm["customer"] = customer_id
    if pm["type"] == "card" and pm["card"]["checks"]["cvc_check"] == "unchecked":
        pm["card"]["checks"]["cvc_check"] = "pass"
    ctx.store.put(pm)
    ctx.emit("payment_method.attached", pm)
    return pm


def _succeed(ctx: Context, pi: dict, pm: dict) -> dict:
    charge = charges.new_charge(ctx, pi, pm, status="succeeded", authenticated=pi["_sandbox"]["authenticated"])
    pm = _save_for_later(ctx, pi, pm)
    previous = set_status(ctx, pi, "succeeded")
    pi.update(
        amount_received=pi["amount"],
        latest_charge=charge["id"],
        next_action=None,
        last_payment_error=None,
        processing=None,
    )
    ctx.store.put(pi)
    ctx.emit("charge.succeeded", charge)
    ctx.emit("payment_intent.succeeded", pi)
    charges.after_success(ctx, charge, pm)
    changed(ctx, pi, previous)
    return pi


def error_object(
    code: str,
    message: str,
    pm: dict,
    *,
    type_: str = "card_error",
    decline_code: str | None = None,
    charge: str | None = None,
) -> dict:
    error = {
        "code": code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        "message": message,
        "payment_method": public(pm),
        "type": type_,
    }
    if decline_code:
        error["decline_code"] = decline_code
    if charge:
        error["charge"] = charge
    return error


def _decline(ctx: Context, pi: dict, pm: dict, decision: cards.Decision, *, raise_on_decline: bool) -> dict:
    message = decision.message
    charge = charges.new_charge(
        ctx,
        pi,
        pm,
        status="failed",
        code=decision.error_code,
        decline_code=decision.decline_code,
        message=message,
        authenticated=pi["_sandbox"]["authenticated"],
    )
    previous = set_status(ctx, pi, "requires_payment_method")
    pi["last_payment_error"] = error_object(
        decision.error_code, message, pm, decline_code=decision.decline_code, charge=charge["id"]
    )
    if charge["outcome"].get("advice_code"):
        pi["last_payment_error"]["advice_code"] = charge["outcome"]["advice_code"]
    pi.update(latest_charge=charge["id"], next_action=None, payment_method=None, processing=None)
    pi["_sandbox"]["authenticated"] = False
    ctx.store.put(pi)
    ctx.emit("charge.failed", charge)
    ctx.emit("payment_intent.payment_failed", pi)
    changed(ctx, pi, previous, attempt_failed=True)
    if raise_on_decline:
        raise errors.card_error(
            message,
            code=decision.error_code,
            decline_code=decision.decline_code,
            payment_intent=public(pi),
            payment_method=public(pm),
            charge=charge["id"],
            advice_code=charge["outcome"].get("advice_code"),
        )
    return pi


def _start_processing(ctx: Context, pi: dict, pm: dict) -> dict:
    charge = charges.new_charge(ctx, pi, pm, status="pending")
    if pi.get("setup_future_usage") and pi.get("customer"):
        pm = mark_set_up(ctx, _attach_quietly(ctx, pm, pi["customer"]))
    previous = set_status(ctx, pi, "processing")
    pi.update(latest_charge=charge["id"], next_action=None, last_payment_error=None)
    ctx.store.put(pi)
    ctx.emit("charge.pending", charge)
    ctx.emit("payment_intent.processing", pi)
    ctx.store.schedule(ctx.now() + SETTLE_DELAY, "payment_intent.settle", pi["id"])
    changed(ctx, pi, previous)
    return pi


@job("payment_intent.settle")
def _settle(ctx: Context, pi_id: str, data: dict) -> None:
    """A delayed method's (SEPA, ACH) outcome arrives: processing → succeeded or
    requires_payment_method, with the test account's failure code."""
    pi = ctx.store.get(pi_id)
    if pi is None or pi["status"] != "processing":
        return
    pm = ctx.store.require(pi["payment_method"])
    charge = ctx.store.require(pi["latest_charge"])
    code = delayed_outcome(pm)
    if code in DELAYED_FAILURES:
        message = DELAYED_FAILURES[code]
        charges.fail_pending(ctx, charge, code, message)
        previous = set_status(ctx, pi, "requires_payment_method")
        pi["last_payment_error"] = error_object(code, message, pm, charge=charge["id"])
        pi["payment_method"] = None
        ctx.store.put(pi)
        ctx.emit("payment_intent.payment_failed", pi)
    else:
        charges.succeed_pending(ctx, charge)
        previous = set_status(ctx, pi, "succeeded")
        pi["amount_received"] = pi["amount"]
        ctx.store.put(pi)
        ctx.emit("payment_intent.succeeded", pi)
        charges.after_success(ctx, charge, pm)
    changed(ctx, pi, previous)


def complete_payment_authentication(ctx: Context, pi: dict, succeeded: bool) -> dict:
    """The buyer completed (or failed) 3-D Secure for a PaymentIntent."""
    if pi["status"] != "requires_action":
        raise unexpected(pi, "authenticate", ("requires_action",))
    pm = ctx.store.require(pi["payment_method"])
    pi["next_action"] = None
    if succeeded:
        pi["_sandbox"]["authenticated"] = True
        return attempt(ctx, pi, pm, raise_on_decline=False)
    previous = set_status(ctx, pi, "requires_payment_method")
    pi["last_payment_error"] = error_object(
        "payment_intent_authentication_failure", AUTH_FAILURE_MESSAGE, pm, type_="invalid_request_error"
    )
    pi["payment_method"] = None
    pi["_sandbox"]["authenticated"] = False
    ctx.store.put(pi)
    ctx.emit("payment_intent.payment_failed", pi)
    changed(ctx, pi, previous)
    return pi
