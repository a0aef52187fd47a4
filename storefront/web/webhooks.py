"""``POST /api/stripe/webhook``: Stripe's deliveries (no CSRF: the signature authenticates)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..extensions import csrf, limiter
from ..services import webhooks
from ..stripe_gateway import WebhookSignatureInvalid

bp = Blueprint("webhooks", __name__)


@bp.post("/api/stripe/webhook")
@csrf.exempt
@limiter.exempt
def receive():
    try:
        outcome = webhooks.receive(request.get_data(cache=False),
                                   request.headers.get("Stripe-Signature"))
    except WebhookSignatureInvalid:
        return jsonify(error={"code": "invalid_signature", "type": "invalid_request_error",
                              "message": "Invalid or missing Stripe-Signature."}), 400
    return jsonify(outcome.body), outcome.status
