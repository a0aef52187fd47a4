"""Disputes (retrieve, list) and early fraud warnings: what the dispute test cards (and the
disputed SEPA IBAN) do after a successful payment, as jobs on the sandbox clock that
:func:`.charges.after_success` schedules."""

from __future__ import annotations

from ..api import Context, list_endpoint, retrieve_endpoint
from ..jobs import job
from ..primitives import new_id

_EVIDENCE_KEYS = [
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
]


def _dispute_method_details(charge: dict, reason: str | None, inquiry: bool) -> dict | None:
    """The card network's view of the dispute (None for a bank debit)."""
    details = charge["payment_method_details"]
    if details["type"] != "card":
        return None
    return {
        "card": {
            "brand": details["card"]["brand"],
            "case_type": "inquiry" if inquiry else "chargeback",
            "network_reason_code": {"fraudulent": "10.4", "product_not_received": "13.1"}.get(reason or "", "13.3"),
            "network": details["card"]["brand"],
        },
        "type": "card",
    }


def _evidence_details(ctx: Context) -> dict:
    return {
        "due_by": ctx.now() + 7 * 86400,
        "enhanced_eligibility": {},
        "has_evidence": False,
        "past_due": False,
        "submission_count": 0,
        "submission_method": "not_submitted",
    }


def _new_dispute(ctx: Context, charge: dict, data: dict, inquiry: bool) -> dict:
    evidence = dict.fromkeys(_EVIDENCE_KEYS)
    evidence["enhanced_evidence"] = {}
    return {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": ctx.now(),
        "currency": charge["currency"],
        "enhanced_eligibility_types": ["visa_compelling_evidence_3"] if data.get("ce3") else [],
        "evidence": evidence,
        "evidence_details": _evidence_details(ctx),
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method_details": _dispute_method_details(charge, data.get("reason"), inquiry),
        "reason": data.get("reason") or "general",
        "status": "warning_needs_response" if inquiry else "needs_response",
    }


@job("charge.dispute")
def _create_dispute(ctx: Context, charge_id: str, data: dict) -> None:
    charge = ctx.store.get(charge_id)
    if charge is None or charge["status"] != "succeeded":
        return
    inquiry = bool(data.get("inquiry"))
    dispute = _new_dispute(ctx, charge, data, inquiry)
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
    warning = {
        "id": new_id("issfr"),
        "object": "radar.early_fraud_warning",
        "actionable": True,
        "charge": charge_id,
        "created": ctx.now(),
        "fraud_type": "made_with_stolen_card",
        "livemode": False,
        "payment_intent": charge.get("payment_intent"),
    }
    ctx.store.put(warning)
    ctx.emit("radar.early_fraud_warning.created", warning)


retrieve_dispute = retrieve_endpoint("/v1/disputes/<dispute_id>", "dispute", params="DisputeRetrieveParams")
list_disputes = list_endpoint(
    "/v1/disputes", "dispute", params="DisputeListParams", filters=("charge", "payment_intent")
)
