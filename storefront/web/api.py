"""JSON API for external front ends (the seed contract). Session auth; POSTs need the CSRF
token in ``X-CSRFToken``. Errors answer ``{"error": {"code", "message", "type"}}``."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db, limiter
from ..models import Order
from ..services import purchase
from .errors import error_response
from .orders import BUYER_STATUS, checkout_return_urls

bp = Blueprint("api", __name__, url_prefix="/api")

#: the seed contract's seven statuses; a refunded or disputed session was paid (as Stripe's
#: ``payment_status`` still says), and a payment waiting for 3-D Secure is unpaid
API_STATUS = {**BUYER_STATUS, "requires_action": "unpaid", "refunded": "paid"}
#: matched with ``fullmatch``: ``$`` alone would let ``price_123\n`` through
PRICE_ID = re.compile(r"price_[A-Za-z0-9]{1,100}")
API_LIMIT = "100 per minute"


@bp.get("/config")
def config():
    """What a front end needs to mount Stripe.js (publishable key only, never the secret)."""
    return jsonify(
        publishableKey=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripeJsUrl=current_app.config["STRIPE_JS_URL"],
        mode=current_app.config["STRIPE_MODE"],
    )


def _login_required():
    if not current_user.is_authenticated:
        return error_response(401, "authentication_required", "Log in to buy.", "authentication_error")
    return None


@bp.post("/create-checkout-session")
@limiter.limit(API_LIMIT)
def create_checkout_session():
    """``{"priceId": "price_…"}`` -> ``{"url", "sessionId"}``; the amount is our catalog's."""
    if (denied := _login_required()) is not None:
        return denied
    body = request.get_json(silent=True)
    price_id = body.get("priceId") if isinstance(body, dict) else None
    if not isinstance(price_id, str) or not PRICE_ID.fullmatch(price_id):
        return error_response(400, "invalid_price_id", "priceId must be a Stripe price id such as price_123.")
    price = purchase.price_for_stripe_id(price_id)  # a refusal answers through web/errors.py
    order, url = purchase.start_checkout(current_user, price, return_urls=checkout_return_urls)
    return jsonify(url=url, sessionId=order.stripe_checkout_session_id)


@bp.get("/check-payment-status/<session_id>")
@limiter.limit(API_LIMIT)
def check_payment_status(session_id: str):
    """``{"status"}``: paid, unpaid, processing, expired, failed, canceled, no_payment_required."""
    if (denied := _login_required()) is not None:
        return denied
    order = db.session.scalar(select(Order).where(Order.stripe_checkout_session_id == session_id))
    if order is None or (order.user_id != current_user.id and not current_user.is_admin):
        return error_response(404, "session_not_found", "No such checkout session.")
    order = purchase.sync_if_due(order)
    return jsonify(status=API_STATUS[order.status])
