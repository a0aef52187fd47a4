"""Charges (retrieve, list) and what the test cards do after a payment: disputes and early
fraud warnings (scheduled jobs on the sandbox clock, in :mod:`.disputes`). Refunds are in
:mod:`.refunds`.

:func:`new_charge` is how a PaymentIntent records an attempt; :func:`after_success` schedules a
card's after-effects.
"""

from __future__ import annotations

import datetime

from .. import cards
from ..api import Context, list_endpoint, retrieve_endpoint
from ..expand import includable
from ..primitives import new_id
from .payment_methods import card_of, delayed_outcome, is_delayed

#: seconds of sandbox time before a card's after-effects arrive
DISPUTE_DELAY = 2

_SELLER_MESSAGES = {
    "generic_decline": "The bank did not return any further details with this decline.",
}


def _outcome(card: dict | None, status: str, decline_code: str | None, code: str | None) -> dict:
    risk_level, risk_score = cards.risk_of(card)
    outcome = {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": risk_level,
        "risk_score": risk_score,
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    if status == "pending":
        outcome.update(network_status="approved_by_network", risk_level="not_assessed", risk_score=None)
    elif status == "failed":
        if decline_code == "fraudulent" and risk_level == "highest":
            outcome.update(
                network_status="not_sent_to_network",
                reason="highest_risk_level",
                seller_message="Stripe blocked this payment as too risky.",
                type="blocked",
            )
        else:
            reason = decline_code or code
            outcome.update(
                network_status="declined_by_network",
                reason=reason,
                type="issuer_declined",
                seller_message=_SELLER_MESSAGES.get(reason or "", f"The bank returned the decline code `{reason}`."),
            )
            if reason in ("generic_decline", "fraudulent", "lost_card", "stolen_card"):
                outcome["advice_code"] = "do_not_try_again"
            elif reason in ("insufficient_funds", "card_velocity_exceeded", "processing_error"):
                outcome["advice_code"] = "try_again_later"
    elif risk_level == "elevated":
        outcome.update(reason="elevated_risk_level")
    return outcome


def _card_details(pm: dict, amount: int, status: str, authenticated: bool) -> dict:
    card = pm["card"]
    test_card = card_of(pm)
    three_d_secure = None
    if authenticated:
        three_d_secure = {
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "exemption_indicator": None,
            "result": "authenticated",
            "result_reason": None,
            "transaction_id": new_id("3ds").split("_", 1)[1],
            "version": "2.2.0",
        }
    return {
        "amount_authorized": amount if status == "succeeded" else None,
        "authorization_code": "123456" if status == "succeeded" else None,
        "brand": card["brand"],
        "checks": cards.checks_of(
            test_card, cvc_given=bool(pm.get("_sandbox", {}).get("cvc")) or card["checks"]["cvc_check"] is not None
        ),
        "country": card["country"],
        "exp_month": card["exp_month"],
        "exp_year": card["exp_year"],
        "extended_authorization": {"status": "disabled"},
        "fingerprint": card["fingerprint"],
        "funding": card["funding"],
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": card["last4"],
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": card["brand"],
        "network_token": {"used": False},
        "network_transaction_id": "".join(str((ord(c) * 7) % 10) for c in pm["id"][-15:]),
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "regulated_status": "unregulated",
        "three_d_secure": three_d_secure,
        "wallet": None,
    }


def _date(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).date().isoformat()


def _us_bank_account_details(ctx: Context, pm: dict) -> dict:
    bank = pm["us_bank_account"]
    return {
        "account_holder_type": bank["account_holder_type"],
        "account_type": bank["account_type"],
        "bank_name": bank["bank_name"],
        "expected_debit_date": _date(ctx.now()),
        "fingerprint": bank["fingerprint"],
        "last4": bank["last4"],
        "mandate": None,
        "payment_reference": None,
        "routing_number": bank["routing_number"],
    }


def _sepa_debit_details(pm: dict) -> dict:
    sepa = pm["sepa_debit"]
    return {
        "bank_code": sepa["bank_code"],
        "branch_code": sepa["branch_code"],
        "country": sepa["country"],
        "fingerprint": sepa["fingerprint"],
        "last4": sepa["last4"],
        "mandate": None,
    }


def _payment_method_details(ctx: Context, pm: dict, amount: int, status: str, authenticated: bool) -> dict:
    """The charge's ``payment_method_details``: a snapshot of the card or bank account."""
    if pm["type"] == "card":
        return {"card": _card_details(pm, amount, status, authenticated), "type": "card"}
    if pm["type"] == "us_bank_account":
        return {"us_bank_account": _us_bank_account_details(ctx, pm), "type": "us_bank_account"}
    return {"sepa_debit": _sepa_debit_details(pm), "type": "sepa_debit"}


def _amounts(amount: int, status: str) -> dict:
    return {"amount": amount, "amount_captured": amount if status == "succeeded" else 0, "amount_refunded": 0}


def _failure(status: str, code: str | None, message: str | None) -> dict:
    failed = status == "failed"
    return {
        "failure_balance_transaction": None,
        "failure_code": code if failed else None,
        "failure_message": message if failed else None,
    }


def _receipt(pi: dict) -> dict:
    return {
        "receipt_email": pi.get("receipt_email"),
        "receipt_number": None,
        "receipt_url": None,  # the sandbox renders no receipts
    }


def new_charge(
    ctx: Context,
    pi: dict,
    pm: dict,
    *,
    status: str,
    code: str | None = None,
    decline_code: str | None = None,
    message: str | None = None,
    authenticated: bool = False,
) -> dict:
    """Store the Charge of one payment attempt on ``pi`` (status succeeded, pending, failed)."""
    details = _payment_method_details(ctx, pm, pi["amount"], status, authenticated)
    charge = {
        "id": new_id("py" if is_delayed(pm) else "ch"),
        "object": "charge",
        **_amounts(pi["amount"], status),
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": dict(pm["billing_details"]),
        "calculated_statement_descriptor": "SANDBOX STORE",
        "captured": status == "succeeded",
        "created": ctx.now(),
        "currency": pi["currency"],
        "customer": pi.get("customer"),
        "description": pi.get("description"),
        "disputed": False,
        **_failure(status, code, message),
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(pi.get("metadata") or {}),
        "on_behalf_of": None,
        "outcome": _outcome(card_of(pm), status, decline_code, code),
        "paid": status == "succeeded",
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": details,
        **_receipt(pi),
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
        "_sandbox": {"pm": pm["id"]},
    }
    if status == "failed" and charge["outcome"]["type"] == "blocked":
        charge["fraud_details"] = {"stripe_report": "fraudulent"}
    return ctx.store.put(charge)


def succeed_pending(ctx: Context, charge: dict) -> dict:
    previous = {
        "status": charge["status"],
        "paid": charge["paid"],
        "captured": charge["captured"],
        "amount_captured": charge["amount_captured"],
    }
    charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
    charge["outcome"].update(risk_level="normal", risk_score=20)
    ctx.store.put(charge)
    ctx.emit("charge.succeeded", charge, previous)
    return charge


def fail_pending(ctx: Context, charge: dict, code: str, message: str) -> dict:
    previous = {"status": charge["status"]}
    charge.update(status="failed", failure_code=code, failure_message=message)
    charge["outcome"].update(
        network_status="declined_by_network", reason=code, seller_message=message, type="issuer_declined"
    )
    ctx.store.put(charge)
    ctx.emit("charge.failed", charge, previous)
    return charge


def after_success(ctx: Context, charge: dict, pm: dict) -> None:
    """Schedule what the card does after a successful payment (disputes, fraud warnings)."""
    card = card_of(pm) or {}
    outcome = card.get("outcome")
    due = ctx.now() + DISPUTE_DELAY
    if is_delayed(pm) and delayed_outcome(pm) == "disputed":
        ctx.store.schedule(due, "charge.dispute", charge["id"], reason="general")
    if outcome == "succeeds_then_disputed":
        reason = "product_not_received" if "ProductNotReceived" in (card.get("pm_id") or "") else "fraudulent"
        ctx.store.schedule(due, "charge.dispute", charge["id"], reason=reason)
    elif outcome == "succeeds_then_disputed_ce3_eligible":
        ctx.store.schedule(due, "charge.dispute", charge["id"], reason="fraudulent", ce3=True)
    elif outcome == "succeeds_then_inquiry":
        ctx.store.schedule(due, "charge.dispute", charge["id"], reason="general", inquiry=True)
    elif outcome == "succeeds_then_multiple_disputes":
        ctx.store.schedule(due, "charge.dispute", charge["id"], reason="fraudulent")
        ctx.store.schedule(due + 1, "charge.dispute", charge["id"], reason="fraudulent")
    elif outcome == "succeeds_then_early_fraud_warning":
        ctx.store.schedule(due, "charge.early_fraud_warning", charge["id"])


# --- charges -----------------------------------------------------------------------------------

retrieve_charge = retrieve_endpoint("/v1/charges/<charge_id>", "charge", params="ChargeRetrieveParams")
list_charges = list_endpoint("/v1/charges", "charge", params="ChargeListParams", filters=("customer", "payment_intent"))


@includable("charge", "refunds")
def _charge_refunds(store, charge: dict) -> dict:
    refunds = [r for r in store.all("refund") if r["charge"] == charge["id"]]
    return {"object": "list", "data": refunds, "has_more": False, "url": f"/v1/charges/{charge['id']}/refunds"}
