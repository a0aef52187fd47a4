"""JSON API for front ends, ours or on another origin (the seed contract). A call carrying our
session cookie needs the CSRF token in ``X-CSRFToken`` on a POST; CORS for ``API_CORS_ORIGINS``,
one rate limit for the whole API (``web/api_guard.py``). Errors answer
``{"error": {"code", "message", "type"}}``."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..models import Order
from ..services import guest_orders, purchase
from ..services.catalog import active_prices
from . import api_guard
from .errors import error_response
from .guest import front_end_url

bp = Blueprint("api", __name__, url_prefix="/api")
api_guard.protect(bp)  # one rate limit for every route here, CSRF where our cookie is, CORS

#: the seed contract's seven statuses from our order states: a refunded (even in part) or
#: disputed session was paid (as Stripe's ``payment_status`` still says), and a payment waiting
#: for 3-D Secure is unpaid. ``no_payment_required`` never comes: every price costs something.
API_STATUS = {
    "pending": "unpaid",
    "requires_action": "unpaid",
    "processing": "processing",
    "paid": "paid",
    "failed": "failed",
    "canceled": "canceled",
    "expired": "expired",
    "refunded": "paid",
    "partially_refunded": "paid",
    "disputed": "paid",
}
SEED_STATUSES = frozenset({"paid", "unpaid", "processing", "expired", "failed", "canceled", "no_payment_required"})
#: matched with ``fullmatch``: ``$`` alone would let ``price_123\n`` through
PRICE_ID = re.compile(r"price_[A-Za-z0-9]{1,100}")
#: how long a browser or a shared cache may reuse the price list without asking
PRICES_MAX_AGE = 60


@bp.get("/config")
def config():
    """What a front end needs to mount Stripe.js (publishable key only, never the secret)."""
    return jsonify(
        publishableKey=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripeJsUrl=current_app.config["STRIPE_JS_URL"],
        mode=current_app.config["STRIPE_MODE"],
    )


@bp.post("/create-checkout-session")
def create_checkout_session():
    """``{"priceId": "price_…", "successUrl"?, "cancelUrl"?}`` -> ``{"url", "sessionId"}``; the
    amount is our catalog's. Signed in (our session cookie, its CSRF token checked before this
    runs): the account buys. No session: a guest checkout (``services/guest_orders.py``: one-time
    prices only, Checkout collects the email, the order belongs to it). A return URL whose origin
    is not in ``API_CORS_ORIGINS`` is not used: the store's own page instead (on ``STORE_URL``)."""
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    price_id = body.get("priceId")
    if not isinstance(price_id, str) or not PRICE_ID.fullmatch(price_id):
        return error_response(400, "invalid_price_id", "priceId must be a Stripe price id such as price_123.")
    for field in ("successUrl", "cancelUrl"):
        if body.get(field) is not None and not isinstance(body[field], str):
            return error_response(400, "invalid_return_url", f"{field} must be a URL (a string).")
    price = purchase.price_for_stripe_id(price_id)  # a refusal answers through web/errors.py
    guest = not current_user.is_authenticated
    urls = guest_orders.return_urls(
        guest=guest, success_url=front_end_url(body.get("successUrl")), cancel_url=front_end_url(body.get("cancelUrl"))
    )
    if guest:
        order, url = guest_orders.start_guest_checkout(price, return_urls=urls)
    else:
        order, url = purchase.start_checkout(current_user, price, return_urls=urls)
    return jsonify(url=url, sessionId=order.stripe_checkout_session_id)


@bp.get("/check-payment-status/<session_id>")
def check_payment_status(session_id: str):
    """``{"status"}``: paid, unpaid, processing, expired, failed, canceled, no_payment_required.

    For anyone holding the session id (an unguessable capability, as in the seed's flow: the
    front end's success page has it from Stripe's return URL); nothing else about the order."""
    order = None
    if len(session_id) <= 255:
        order = db.session.scalar(select(Order).where(Order.stripe_checkout_session_id == session_id))
    if order is None:
        return error_response(404, "session_not_found", "No such checkout session.")
    order = purchase.sync_if_due(order)
    response = jsonify(status=API_STATUS[order.status])
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/prices")
def prices():
    """What a front end can sell through create-checkout-session: every one-time price on sale
    at Stripe (its ``priceId`` is the Stripe price id to send). Plans billed by the month or year
    are subscribed to on the store's own pages, so they are not listed (``interval`` is there
    for the day they are). Cacheable: the same list has the same ETag, and ``If-None-Match``
    with it answers 304."""
    listed = [
        {
            "priceId": price.stripe_price_id,
            "lookupKey": price.lookup_key,
            "productName": price.product.name,
            "amount": price.unit_amount,
            "currency": price.currency,
            "interval": price.interval,
            "points": price.product.points,
        }
        for price in active_prices()
        if price.stripe_price_id and not price.interval
    ]
    response = jsonify(prices=listed)
    response.headers["Cache-Control"] = f"public, max-age={PRICES_MAX_AGE}"
    response.add_etag()
    return response.make_conditional(request)
