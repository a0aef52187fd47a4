"""Refunds: create (full and partial, of a charge or a PaymentIntent's charge), retrieve,
update, list, a charge's refunds; and the test cards' refunds that stay pending or fail later
(jobs on the sandbox clock)."""

from __future__ import annotations

from .. import errors
from ..api import Context, apply_metadata, endpoint, list_endpoint, list_response, retrieve_endpoint
from ..jobs import job
from ..money import format_refund_amount
from ..primitives import new_id
from .payment_methods import card_of

#: seconds of sandbox time before a pending refund settles (or a refund fails)
REFUND_SETTLE_DELAY = 5


def _charge_to_refund(ctx: Context, params: dict) -> dict:
    if params.get("charge") and params.get("payment_intent"):
        raise errors.invalid_request("You can only specify one of charge or payment_intent.", param="payment_intent")
    if params.get("charge"):
        return ctx.load(params["charge"], "charge", param="charge")
    if params.get("payment_intent"):
        pi = ctx.load(params["payment_intent"], "payment_intent", param="payment_intent")
        charge = ctx.store.get(pi["latest_charge"]) if pi.get("latest_charge") else None
        if charge is None or pi["status"] != "succeeded":
            raise errors.invalid_request(
                f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
        return charge
    raise errors.invalid_request(
        "One of the following params should be provided for this request: payment_intent or charge.",
        code="parameter_missing",
    )


def _refundable_amount(charge: dict, params: dict) -> int:
    """The amount to refund (default: what is left), refused when the charge cannot give it."""
    if charge["status"] != "succeeded":
        raise errors.invalid_request(
            f"Charge {charge['id']} is {charge['status']}; only a succeeded charge can be refunded.",
            code="charge_not_refundable",
        )
    if charge["disputed"]:
        raise errors.invalid_request(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise errors.invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = params.get("amount", remaining)
    if amount <= 0:
        raise errors.invalid_request("Invalid positive integer", param="amount", code="parameter_invalid_integer")
    if amount > remaining:
        raise errors.invalid_request(
            f"Refund amount ({format_refund_amount(amount, charge['currency'])}) is greater than "
            f"unrefunded amount on charge ({format_refund_amount(remaining, charge['currency'])})",
            param="amount",
            code="amount_too_large",
        )
    return amount


def _destination_details(charge: dict) -> dict | None:
    if charge["payment_method_details"]["type"] != "card":
        return None
    return {
        "card": {
            "reference_status": "pending",
            "reference_type": "acquirer_reference_number",
            "type": "refund",
        },
        "type": "card",
    }


def _new_refund(ctx: Context, charge: dict, amount: int, status: str, params: dict) -> dict:
    refund = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": ctx.now(),
        "currency": charge["currency"],
        "destination_details": _destination_details(charge),
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "reason": params.get("reason"),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    apply_metadata(refund, params.get("metadata"))
    return refund


@endpoint(
    "POST",
    "/v1/refunds",
    params="RefundCreateParams",
    supported=["charge", "payment_intent", "amount", "reason", "metadata"],
)
def create_refund(ctx: Context, params: dict) -> dict:
    ctx.require_secret_key()
    charge = _charge_to_refund(ctx, params)
    amount = _refundable_amount(charge, params)
    pm = ctx.store.get(charge["payment_method"]) if charge.get("payment_method") else None
    outcome = (card_of(pm) or {}).get("outcome")
    status = "pending" if outcome == "refund_pending_then_succeeded" else "succeeded"
    refund = _new_refund(ctx, charge, amount, status, params)
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


retrieve_refund = retrieve_endpoint("/v1/refunds/<refund_id>", "refund", params="RefundRetrieveParams")


@endpoint("POST", "/v1/refunds/<refund_id>", params="RefundUpdateParams", supported=["metadata"])
def update_refund(ctx: Context, params: dict, refund_id: str) -> dict:
    ctx.require_secret_key()
    refund = ctx.load(refund_id, "refund")
    previous = {"metadata": dict(refund["metadata"])}
    apply_metadata(refund, params.get("metadata"))
    ctx.store.put(refund)
    ctx.emit("refund.updated", refund, previous)
    return refund


list_refunds = list_endpoint("/v1/refunds", "refund", params="RefundListParams", filters=("charge", "payment_intent"))


@endpoint(
    "GET",
    "/v1/charges/<charge_id>/refunds",
    params="ChargeListRefundsParams",
    supported=["limit", "starting_after", "ending_before"],
)
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
    refund.update(status="failed", failure_reason="expired_or_canceled_card", failure_balance_transaction=None)
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
