"""Charges (retrieve, list), refunds (create, retrieve, update, list) and disputes (retrieve,
list), with what the test cards do after a payment: disputes, early fraud warnings, refunds that
stay pending or fail later (scheduled jobs on the sandbox clock).

:func:`new_charge` is how a PaymentIntent records an attempt; :func:`after_success` schedules a
card's after-effects.
"""
from __future__ import annotations

import datetime

from .. import cards, errors
from ..api import Context, apply_metadata, endpoint, list_endpoint, list_response, retrieve_endpoint
from ..expand import includable
from ..jobs import job
from ..money import format_refund_amount
from ..primitives import new_id
from .payment_methods import card_of, delayed_outcome, is_delayed

#: seconds of sandbox time before a card's after-effects arrive
DISPUTE_DELAY = 2
REFUND_SETTLE_DELAY = 5

_SELLER_MESSAGES = {
    "generic_decline": "The bank did not return any further details with this decline.",
}


def _outcome(card: dict | None, status: str, decline_code: str | None,
             code: str | None) -> dict:
    risk_level, risk_score = cards.risk_of(card)
    outcome = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
               "network_status": "approved_by_network", "reason": None,
               "risk_level": risk_level, "risk_score": risk_score,
               "seller_message": "Payment complete.", "type": "authorized"}
    if status == "pending":
        outcome.update(network_status="approved_by_network", risk_level="not_assessed",
                       risk_score=None)
    elif status == "failed":
        if decline_code == "fraudulent" and risk_level == "highest":
            outcome.update(network_status="not_sent_to_network", reason="highest_risk_level",
                           seller_message="Stripe blocked this payment as too risky.",
                           type="blocked")
        else:
            reason = decline_code or code
            outcome.update(network_status="declined_by_network", reason=reason,
                           type="issuer_declined",
                           seller_message=_SELLER_MESSAGES.get(
                               reason or "", f"The bank returned the decline code `{reason}`."))
            if reason in ("generic_decline", "fraudulent", "lost_card", "stolen_card"):
                outcome["advice_code"] = "do_not_try_again"
            elif reason in ("insufficient_funds", "card_velocity_exceeded",
                            "processing_error"):
                outcome["advice_code"] = "try_again_later"
    elif risk_level == "elevated":
        outcome.update(reason="elevated_risk_level")
    return outcome


def _card_details(pm: dict, amount: int, status: str, authenticated: bool) -> dict:
    card = pm["card"]
    test_card = card_of(pm)
    three_d_secure = None
    if authenticated:
        three_d_secure = {"authentication_flow": "challenge",
                          "electronic_commerce_indicator": "05", "exemption_indicator": None,
                          "result": "authenticated", "result_reason": None,
                          "transaction_id": new_id("3ds").split("_", 1)[1], "version": "2.2.0"}
    return {
        "amount_authorized": amount if status == "succeeded" else None,
        "authorization_code": "123456" if status == "succeeded" else None,
        "brand": card["brand"],
        "checks": cards.checks_of(test_card, cvc_given=bool(pm.get("_sandbox", {}).get("cvc"))
                                  or card["checks"]["cvc_check"] is not None),
        "country": card["country"], "exp_month": card["exp_month"],
        "exp_year": card["exp_year"], "extended_authorization": {"status": "disabled"},
        "fingerprint": card["fingerprint"], "funding": card["funding"],
        "incremental_authorization": {"status": "unavailable"}, "installments": None,
        "last4": card["last4"], "mandate": None, "multicapture": {"status": "unavailable"},
        "network": card["brand"], "network_token": {"used": False},
        "network_transaction_id": "".join(str((ord(c) * 7) % 10) for c in pm["id"][-15:]),
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "regulated_status": "unregulated", "three_d_secure": three_d_secure, "wallet": None,
    }


def _date(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).date().isoformat()


def new_charge(ctx: Context, pi: dict, pm: dict, *, status: str, code: str | None = None,
               decline_code: str | None = None, message: str | None = None,
               authenticated: bool = False) -> dict:
    """Store the Charge of one payment attempt on ``pi`` (status succeeded, pending, failed)."""
    amount = pi["amount"]
    card = card_of(pm)
    if pm["type"] == "card":
        details = {"card": _card_details(pm, amount, status, authenticated), "type": "card"}
    elif pm["type"] == "us_bank_account":
        bank = pm["us_bank_account"]
        details = {"us_bank_account": {
            "account_holder_type": bank["account_holder_type"],
            "account_type": bank["account_type"], "bank_name": bank["bank_name"],
            "expected_debit_date": _date(ctx.now()), "fingerprint": bank["fingerprint"],
            "last4": bank["last4"], "mandate": None, "payment_reference": None,
            "routing_number": bank["routing_number"]}, "type": "us_bank_account"}
    else:
        sepa = pm["sepa_debit"]
        details = {"sepa_debit": {"bank_code": sepa["bank_code"],
                                  "branch_code": sepa["branch_code"], "country": sepa["country"],
                                  "fingerprint": sepa["fingerprint"], "last4": sepa["last4"],
                                  "mandate": None}, "type": "sepa_debit"}
    charge_id = new_id("py" if is_delayed(pm) else "ch")
    charge = {
        "id": charge_id, "object": "charge", "amount": amount,
        "amount_captured": amount if status == "succeeded" else 0, "amount_refunded": 0,
        "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": None, "billing_details": dict(pm["billing_details"]),
        "calculated_statement_descriptor": "SANDBOX STORE",
        "captured": status == "succeeded", "created": ctx.now(), "currency": pi["currency"],
        "customer": pi.get("customer"), "description": pi.get("description"),
        "disputed": False, "failure_balance_transaction": None,
        "failure_code": code if status == "failed" else None,
        "failure_message": message if status == "failed" else None, "fraud_details": {},
        "livemode": False, "metadata": dict(pi.get("metadata") or {}), "on_behalf_of": None,
        "outcome": _outcome(card, status, decline_code, code),
        "paid": status == "succeeded", "payment_intent": pi["id"], "payment_method": pm["id"],
        "payment_method_details": details, "receipt_email": pi.get("receipt_email"),
        "receipt_number": None,
        "receipt_url": None,  # the sandbox renders no receipts
        "refunded": False, "review": None, "shipping": None, "source_transfer": None,
        "statement_descriptor": None, "statement_descriptor_suffix": None, "status": status,
        "transfer_data": None, "transfer_group": None,
        "_sandbox": {"pm": pm["id"]},
    }
    if status == "failed" and charge["outcome"]["type"] == "blocked":
        charge["fraud_details"] = {"stripe_report": "fraudulent"}
    return ctx.store.put(charge)


def succeed_pending(ctx: Context, charge: dict) -> dict:
    previous = {"status": charge["status"], "paid": charge["paid"],
                "captured": charge["captured"], "amount_captured": charge["amount_captured"]}
    charge.update(status="succeeded", paid=True, captured=True,
                  amount_captured=charge["amount"])
    charge["outcome"].update(risk_level="normal", risk_score=20)
    ctx.store.put(charge)
    ctx.emit("charge.succeeded", charge, previous)
    return charge


def fail_pending(ctx: Context, charge: dict, code: str, message: str) -> dict:
    previous = {"status": charge["status"]}
    charge.update(status="failed", failure_code=code, failure_message=message)
    charge["outcome"].update(network_status="declined_by_network", reason=code,
                             seller_message=message, type="issuer_declined")
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
        reason = "product_not_received" if "ProductNotReceived" in (card.get("pm_id") or "") \
            else "fraudulent"
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

retrieve_charge = retrieve_endpoint("/v1/charges/<charge_id>", "charge",
                                    params="ChargeRetrieveParams")
list_charges = list_endpoint("/v1/charges", "charge", params="ChargeListParams",
                             filters=("customer", "payment_intent"))


@includable("charge", "refunds")
def _charge_refunds(store, charge: dict) -> dict:
    refunds = [r for r in store.all("refund") if r["charge"] == charge["id"]]
    return {"object": "list", "data": refunds, "has_more": False,
            "url": f"/v1/charges/{charge['id']}/refunds"}


# --- refunds -----------------------------------------------------------------------------------

def _charge_to_refund(ctx: Context, params: dict) -> dict:
    if params.get("charge") and params.get("payment_intent"):
        raise errors.invalid_request("You can only specify one of charge or payment_intent.",
                                     param="payment_intent")
    if params.get("charge"):
        return ctx.load(params["charge"], "charge", param="charge")
    if params.get("payment_intent"):
        pi = ctx.load(params["payment_intent"], "payment_intent", param="payment_intent")
        charge = ctx.store.get(pi["latest_charge"]) if pi.get("latest_charge") else None
        if charge is None or pi["status"] != "succeeded":
            raise errors.invalid_request(
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                param="payment_intent", code="charge_not_refundable")
        return charge
    raise errors.invalid_request("One of the following params should be provided for this "
                                 "request: payment_intent or charge.",
                                 code="parameter_missing")


@endpoint("POST", "/v1/refunds", params="RefundCreateParams",
          supported=["charge", "payment_intent", "amount", "reason", "metadata"])
def create_refund(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    charge = _charge_to_refund(ctx, params)
    if charge["status"] != "succeeded":
        raise errors.invalid_request(
            f"Charge {charge['id']} is {charge['status']}; only a succeeded charge can be "
            "refunded.", code="charge_not_refundable")
    if charge["disputed"]:
        raise errors.invalid_request(f"Charge {charge['id']} has been charged back; cannot "
                                     "issue a refund.", code="charge_disputed")
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise errors.invalid_request(f"Charge {charge['id']} has already been refunded.",
                                     code="charge_already_refunded")
    amount = params.get("amount", remaining)
    if amount <= 0:
        raise errors.invalid_request("Invalid positive integer", param="amount",
                                     code="parameter_invalid_integer")
    if amount > remaining:
        raise errors.invalid_request(
            f"Refund amount ({format_refund_amount(amount, charge['currency'])}) is greater than "
            f"unrefunded amount on charge ({format_refund_amount(remaining, charge['currency'])})",
            param="amount",
            code="amount_too_large")
    card = None
    pm = ctx.store.get(charge["payment_method"]) if charge.get("payment_method") else None
    card = card_of(pm)
    outcome = (card or {}).get("outcome")
    status = "pending" if outcome == "refund_pending_then_succeeded" else "succeeded"
    refund = {
        "id": new_id("re"), "object": "refund", "amount": amount, "balance_transaction": None,
        "charge": charge["id"], "created": ctx.now(), "currency": charge["currency"],
        "destination_details": ({"card": {"reference_status": "pending",
                                          "reference_type": "acquirer_reference_number",
                                          "type": "refund"}, "type": "card"}
                                if charge["payment_method_details"]["type"] == "card" else None),
        "metadata": {}, "payment_intent": charge.get("payment_intent"),
        "reason": params.get("reason"), "receipt_number": None,
        "source_transfer_reversal": None, "status": status, "transfer_reversal": None,
    }
    apply_metadata(refund, params.get("metadata"))
    ctx.store.put(refund)
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    ctx.store.put(charge)
    ctx.emit("refund.created", refund)
    ctx.emit("charge.refunded", charge, previous)
    if outcome == "refund_pending_then_succeeded":
        ctx.store.schedule(ctx.now() + REFUND_SETTLE_DELAY, "refund.settle", refund["id"])
    elif outcome == "refund_succeeded_then_failed":
        ctx.store.schedule(ctx.now() + REFUND_SETTLE_DELAY, "refund.fail", refund["id"])
    return refund


retrieve_refund = retrieve_endpoint("/v1/refunds/<refund_id>", "refund",
                                    params="RefundRetrieveParams")


@endpoint("POST", "/v1/refunds/<refund_id>", params="RefundUpdateParams", supported=["metadata"])
def update_refund(ctx: Context, params: dict, refund_id: str) -> dict:
    ctx.require_secret_key()
    refund = ctx.load(refund_id, "refund")
    previous = {"metadata": dict(refund["metadata"])}
    apply_metadata(refund, params.get("metadata"))
    ctx.store.put(refund)
    ctx.emit("refund.updated", refund, previous)
    return refund


list_refunds = list_endpoint("/v1/refunds", "refund", params="RefundListParams",
                             filters=("charge", "payment_intent"))


@endpoint("GET", "/v1/charges/<charge_id>/refunds", params="ChargeListRefundsParams",
          supported=["limit", "starting_after", "ending_before"])
def list_charge_refunds(ctx: Context, params: dict, charge_id: str) -> dict:
    ctx.require_secret_key()
    ctx.load(charge_id, "charge")
    refunds = [r for r in ctx.store.all("refund") if r["charge"] == charge_id]
    return list_response(refunds, f"/v1/charges/{charge_id}/refunds", params)


@job("refund.settle")
def _settle_refund(ctx: Context, refund_id: str, data: dict) -> None:
    refund = ctx.store.get(refund_id)
    if refund is None or refund["status"] != "pending":
        return
    refund["status"] = "succeeded"
    ctx.store.put(refund)
    ctx.emit("refund.updated", refund, {"status": "pending"})
    ctx.emit("charge.refund.updated", refund, {"status": "pending"})


@job("refund.fail")
def _fail_refund(ctx: Context, refund_id: str, data: dict) -> None:
    refund = ctx.store.get(refund_id)
    if refund is None or refund["status"] not in ("succeeded", "pending"):
        return
    previous_status = refund["status"]
    refund.update(status="failed", failure_reason="expired_or_canceled_card",
                  failure_balance_transaction=None)
    ctx.store.put(refund)
    charge = ctx.store.get(refund["charge"])
    if charge:
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] = max(0, charge["amount_refunded"] - refund["amount"])
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        ctx.store.put(charge)
        ctx.emit("charge.updated", charge, previous)
    ctx.emit("refund.failed", refund, {"status": previous_status})
    ctx.emit("refund.updated", refund, {"status": previous_status})
    ctx.emit("charge.refund.updated", refund, {"status": previous_status})


# --- disputes ----------------------------------------------------------------------------------

_EVIDENCE_KEYS = [
    "access_activity_log", "billing_address", "cancellation_policy",
    "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
    "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
    "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
    "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address",
    "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
    "uncategorized_file", "uncategorized_text"]


@job("charge.dispute")
def _create_dispute(ctx: Context, charge_id: str, data: dict) -> None:
    charge = ctx.store.get(charge_id)
    if charge is None or charge["status"] != "succeeded":
        return
    inquiry = bool(data.get("inquiry"))
    details = charge["payment_method_details"]
    if details["type"] == "card":
        pm_details = {"card": {"brand": details["card"]["brand"],
                               "case_type": "inquiry" if inquiry else "chargeback",
                               "network_reason_code": {"fraudulent": "10.4",
                                                       "product_not_received": "13.1"}
                               .get(data.get("reason") or "", "13.3"),
                               "network": details["card"]["brand"]}, "type": "card"}
    else:
        pm_details = None
    evidence = dict.fromkeys(_EVIDENCE_KEYS)
    evidence["enhanced_evidence"] = {}
    dispute = {
        "id": new_id("dp"), "object": "dispute", "amount": charge["amount"],
        "balance_transactions": [], "charge": charge_id, "created": ctx.now(),
        "currency": charge["currency"],
        "enhanced_eligibility_types": ["visa_compelling_evidence_3"] if data.get("ce3") else [],
        "evidence": evidence,
        "evidence_details": {"due_by": ctx.now() + 7 * 86400, "enhanced_eligibility": {},
                             "has_evidence": False, "past_due": False, "submission_count": 0,
                             "submission_method": "not_submitted"},
        "is_charge_refundable": inquiry, "livemode": False, "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method_details": pm_details,
        "reason": data.get("reason") or "general",
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    ctx.store.put(dispute)
    previous = {"disputed": charge["disputed"]}
    if not inquiry:
        charge["disputed"] = True
        ctx.store.put(charge)
    ctx.emit("charge.dispute.created", dispute)
    if not inquiry:
        ctx.emit("charge.updated", charge, previous)


@job("charge.early_fraud_warning")
def _early_fraud_warning(ctx: Context, charge_id: str, data: dict) -> None:
    charge = ctx.store.get(charge_id)
    if charge is None:
        return
    warning = {"id": new_id("issfr"), "object": "radar.early_fraud_warning", "actionable": True,
               "charge": charge_id, "created": ctx.now(), "fraud_type": "made_with_stolen_card",
               "livemode": False, "payment_intent": charge.get("payment_intent")}
    ctx.store.put(warning)
    ctx.emit("radar.early_fraud_warning.created", warning)


retrieve_dispute = retrieve_endpoint("/v1/disputes/<dispute_id>", "dispute",
                                     params="DisputeRetrieveParams")
list_disputes = list_endpoint("/v1/disputes", "dispute", params="DisputeListParams",
                              filters=("charge", "payment_intent"))
