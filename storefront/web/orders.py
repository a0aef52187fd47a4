"""Orders: the status page that polls, its JSON, the Checkout return, the buyer's history."""
from __future__ import annotations

from typing import Protocol

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import Order, User
from ..services import purchase
from .helpers import format_money

bp = Blueprint("orders", __name__, url_prefix="/orders")

#: the seed front-end contract's statuses, from our order states
BUYER_STATUS = {
    "pending": "unpaid", "requires_action": "requires_action", "processing": "processing",
    "paid": "paid", "failed": "failed", "canceled": "canceled", "expired": "expired",
    "refunded": "refunded", "partially_refunded": "refunded", "disputed": "paid",
}


def external_url(endpoint: str, **values) -> str:
    """An absolute URL of ours, for Stripe to send the buyer to: on ``EXTERNAL_URL`` when it is
    set, else on the request's host (which the host guard has checked is a trusted one)."""
    base = current_app.config.get("EXTERNAL_URL")
    if not base:
        return url_for(endpoint, _external=True, **values)
    return base.rstrip("/") + url_for(endpoint, **values)


def checkout_return_urls(public_id: str) -> tuple[str, str]:
    """Where Stripe Checkout sends the buyer back: the status page, or the cancel route."""
    success = external_url("orders.show", public_id=public_id)
    return (success + "?session_id={CHECKOUT_SESSION_ID}",
            external_url("orders.checkout_canceled", public_id=public_id))


def own_order(public_id: str) -> Order:
    """The order, if it is the current user's (or the user is an admin); 404 otherwise, so
    another buyer's order ids reveal nothing."""
    order = db.session.scalar(select(Order).where(Order.public_id == public_id))
    if order is None or (order.user_id != current_user.id and not current_user.is_admin):
        abort(404)
    return order


def own_order_with_balance(public_id: str) -> Order:
    """:func:`own_order`, reading the owner's points balance in the same statement.

    The logged-in user's row is read first (by Flask-Login), the order afterwards; a webhook
    committing in between would give a page saying "paid" with the balance from before the
    payment -- and the status page stops polling once paid. Reading both at once keeps the
    header's balance at least as new as the order's state (still one indexed read)."""
    row = db.session.execute(
        select(Order, User.points_balance).join(User, User.id == Order.user_id)
        .where(Order.public_id == public_id)).first()
    if row is None or (row[0].user_id != current_user.id and not current_user.is_admin):
        abort(404)
    order, balance = row
    if order.user_id == current_user.id:
        set_committed_value(current_user._get_current_object(), "points_balance", balance)
    return order


class OrderFacts(Protocol):
    """What :func:`buyer_message` reads: an :class:`Order`, or the status fast path's row."""
    status: str
    amount: int
    currency: str
    points: int
    entitlement: str | None
    failure_message: str | None
    amount_refunded: int


def buyer_message(order: OrderFacts) -> str:
    amount = format_money(order.amount, order.currency)
    status = order.status
    if status == "pending":
        return f"We're waiting for your payment of {amount}."
    if status == "requires_action":
        return "Your bank asks you to confirm this payment. Finish authentication to continue."
    if status == "processing":
        return (f"Your payment of {amount} is processing. Bank debits can take a while; "
                "we'll add your points as soon as it clears.")
    if status == "paid":
        granted = f" {order.points:,} points were added to your balance." if order.points else ""
        lifetime = (f" {order.entitlement.title()} features are yours forever."
                    if order.entitlement else "")
        return f"Payment of {amount} received.{granted}{lifetime}"
    if status == "failed":
        reason = order.failure_message or "The payment was declined."
        return f"{reason} You have not been charged. You can try again with another card."
    if status == "canceled":
        return "This order was canceled. You have not been charged."
    if status == "expired":
        return "This checkout expired before it was paid. You have not been charged."
    if status in ("refunded", "partially_refunded"):
        return f"{format_money(order.amount_refunded, order.currency)} of {amount} was refunded."
    if status == "disputed":
        return "This payment is disputed with your bank; its points are on hold."
    return status


def status_payload(order: Order) -> dict:
    return {"status": BUYER_STATUS[order.status], "order_status": order.status,
            "message": buyer_message(order), "settled": order.settled,
            "points_credited": order.points if order.paid_at else 0,
            "pay_url": url_for("pay.page", public_id=order.public_id)
            if order.status in purchase.PAYABLE else None}


@bp.get("/")
@login_required
def index():
    orders = db.session.scalars(select(Order).where(Order.user_id == current_user.id)
                                .order_by(Order.created_at.desc()).limit(100)).all()
    return render_template("orders/index.html", orders=orders)


@bp.get("/<public_id>")
@login_required
def show(public_id: str):
    order = purchase.sync_if_due(own_order_with_balance(public_id))
    return render_template("orders/show.html", order=order, status=status_payload(order))


@bp.get("/<public_id>/status")
@login_required
def status(public_id: str):
    """One indexed read; asks Stripe only when the order is unsettled and a sync is due."""
    order = purchase.sync_if_due(own_order_with_balance(public_id))
    payload = status_payload(order)
    # for the header's balance chip (the viewer's own; no extra query unless a sync committed)
    payload["points_balance"] = current_user.points_balance
    return jsonify(payload)


@bp.get("/<public_id>/canceled")
@login_required
def checkout_canceled(public_id: str):
    """Checkout's cancel_url. A GET changes nothing of ours: it re-reads Stripe (the buyer may
    have paid in another tab) and offers to cancel the order, which is a POST."""
    order = purchase.sync_if_due(own_order(public_id))
    if order.status not in purchase.PAYABLE or not order.stripe_checkout_session_id:
        return redirect(url_for("orders.show", public_id=public_id))
    return render_template("orders/left_checkout.html", order=order)


@bp.post("/<public_id>/cancel")
@login_required
def cancel(public_id: str):
    """Cancel an unpaid Checkout order: the session is expired at Stripe, the order canceled."""
    order = own_order(public_id)
    try:
        order = purchase.cancel_checkout(order)
    except purchase.PurchaseError as err:
        flash(err.message, "error")
        return redirect(url_for("orders.show", public_id=public_id))
    if order.status == "canceled":
        flash("Checkout canceled. You have not been charged.", "info")
        return redirect(url_for("shop.review", lookup_key=order.lookup_key))
    return redirect(url_for("orders.show", public_id=public_id))
