"""JSON API. Errors answer ``{"error": {"code", "message", "type"}}`` (see web/errors.py)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/config")
def config():
    """What a front end needs to mount Stripe.js (publishable key only, never the secret)."""
    return jsonify(
        publishableKey=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripeJsUrl=current_app.config["STRIPE_JS_URL"],
        mode=current_app.config["STRIPE_MODE"],
    )
