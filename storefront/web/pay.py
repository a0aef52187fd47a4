"""Paying an order on our page: the Payment Element, or one of the buyer's saved cards."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..services import purchase
from .errors import redirect_on_error
from .helpers import wants_json
from .orders import external_url, own_order, status_payload

bp = Blueprint("pay", __name__, url_prefix="/orders")


@bp.get("/<public_id>/pay")
@login_required
@redirect_on_error("orders.show", "public_id", not_found_page=False)
def page(public_id: str):
    order = own_order(public_id)
    if order.status not in purchase.PAYABLE or not order.stripe_payment_intent_id:
        return redirect(url_for("orders.show", public_id=public_id))
    secret = purchase.client_secret(order)
    return render_template(
        "orders/pay.html",
        order=order,
        client_secret=secret,
        cards=purchase.saved_cards(current_user),
        attempt=purchase.new_attempt_nonce(),
        publishable_key=current_app.config["STRIPE_PUBLISHABLE_KEY"],
        stripe_js_url=current_app.config["STRIPE_JS_URL"],
        return_url=external_url("orders.show", public_id=public_id),
    )


@bp.post("/<public_id>/pay/saved-card")
@login_required
@redirect_on_error("pay.page", "public_id", not_found_page=False)
def saved_card(public_id: str):
    """Confirm with a saved card on the server. JSON for the page's script; a redirect
    without JavaScript (3-D Secure then continues from the status page)."""
    order = own_order(public_id)
    payment_method = request.form.get("payment_method", "")
    attempt = request.form.get("attempt") or purchase.new_attempt_nonce()
    step = purchase.pay_with_saved_card(
        current_user,
        order,
        payment_method,
        attempt=attempt,
        return_url=external_url("orders.show", public_id=public_id),
    )
    payload = status_payload(step.order)
    payload.update(client_secret=step.client_secret, status_url=url_for("orders.show", public_id=public_id))
    if step.message:
        payload["message"] = step.message
    if wants_json():
        return jsonify(payload)
    if step.order.status == "failed":
        flash(payload["message"], "error")
        return redirect(url_for("pay.page", public_id=public_id))
    return redirect(url_for("orders.show", public_id=public_id))
