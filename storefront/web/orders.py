"""Orders: the status page that polls, its JSON, the Checkout return, the buyer's history."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import Row, select
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import Order, User, UserSession
from ..services import purchase
from ..services.accounts import sign_in_max_age
from . import order_status
from .errors import redirect_on_error
from .order_status import BUYER_STATUS, OrderFacts, buyer_message  # noqa: F401 - their old home

bp = Blueprint("orders", __name__, url_prefix="/orders")


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
    return (
        success + "?session_id={CHECKOUT_SESSION_ID}",
        external_url("orders.checkout_canceled", public_id=public_id),
    )


def own_order(public_id: str) -> Order:
    """The order, if it is the current user's (or the user is an admin); 404 otherwise, so
    another buyer's order ids reveal nothing."""
    order = db.session.scalar(select(Order).where(Order.public_id == public_id))
    if order is None or (order.user_id != current_user.id and not current_user.is_admin):
        abort(404)
    return order


def own_order_with_balance(public_id: str) -> Order:
    """:func:`own_order`, reading the owner's points balance in the same statement."""
    return _own_order_read(public_id)[0]


def _own_order_read(public_id: str) -> tuple[Order, int | None]:
    """:func:`own_order` and, when the viewer owns it, the id of the viewer's sign-in row (for
    the status token); the owner's points balance too. One statement.

    The logged-in user's row is read first (by Flask-Login), the order afterwards; a webhook
    committing in between would give a page saying "paid" with the balance from before the
    payment -- and the status page stops polling once paid. Reading both at once keeps the
    header's balance at least as new as the order's state (still one indexed read)."""
    sign_in = current_user.sign_in
    row = db.session.execute(
        select(Order, User.points_balance, UserSession.id)
        .join(User, User.id == Order.user_id)
        .outerjoin(
            UserSession,
            (UserSession.user_id == Order.user_id) & (UserSession.token == (sign_in[0] if sign_in else None)),
        )
        .where(Order.public_id == public_id)
    ).first()
    if row is None or (row[0].user_id != current_user.id and not current_user.is_admin):
        abort(404)
    order, balance, sign_in_id = row
    if order.user_id != current_user.id:
        return order, None
    set_committed_value(current_user._get_current_object(), "points_balance", balance)
    return order, sign_in_id


def status_payload(order: Order) -> dict:
    """The status as the order page and the pay page show it (the poll adds the balance)."""
    return order_status.status_payload(order, _pay_url)


def _pay_url(public_id: str) -> str:
    return url_for("pay.page", public_id=public_id)


@bp.get("/")
@login_required
def index():
    orders = db.session.scalars(
        select(Order).where(Order.user_id == current_user.id).order_by(Order.created_at.desc()).limit(100)
    ).all()
    return render_template("orders/index.html", orders=orders)


@bp.get("/<public_id>")
@login_required
def show(public_id: str):
    order, sign_in_id = _own_order_read(public_id)
    order = purchase.sync_if_due(order)
    token = (
        None
        if sign_in_id is None or order.settled or order.user_id is None
        else order_status.tokens(current_app).issue(order.public_id, order.user_id, sign_in_id)
    )
    return render_template("orders/show.html", order=order, status=status_payload(order), status_token=token)


@bp.get("/<public_id>/status")
def status(public_id: str):
    """The poll. With the page's status token (``Authorization: Bearer``; see
    ``web/order_status.py``) it is one indexed read without loading the user; otherwise the
    session decides, as for any page. Asks Stripe only when the order is unsettled and a sync
    is due. The WSGI fast path (``web/status_fast_path.py``) answers the common case first."""
    token = order_status.token_from_environ(request.environ)
    claim = order_status.tokens(current_app).verify(token, public_id)
    if claim is not None:
        row = order_status.read(db.session.connection(), claim, sign_in_max_age(current_app.config))
        if row is not None:
            return _status_by_token(row)
    return _status_by_session(public_id)


def _status_by_token(row: Row) -> Response:
    if not order_status.sync_due(row.status, row.synced_at):
        return _status_response(order_status.poll_body(row, row.points_balance, _pay_url))
    order = purchase.sync_if_due(db.session.get_one(Order, row.id))
    balance = db.session.scalar(select(User.points_balance).where(User.id == order.user_id))
    return _status_response(order_status.poll_body(order, balance, _pay_url))


@login_required
def _status_by_session(public_id: str) -> Response:
    order = purchase.sync_if_due(own_order_with_balance(public_id))
    # for the header's balance chip (the viewer's own; no extra query unless a sync committed)
    return _status_response(order_status.poll_body(order, current_user.points_balance, _pay_url))


def _status_response(body: bytes) -> Response:
    return current_app.response_class(body, headers=list(order_status.POLL_HEADERS))


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
@redirect_on_error("orders.show", "public_id", not_found_page=False)
def cancel(public_id: str):
    """Cancel an unpaid Checkout order: the session is expired at Stripe, the order canceled."""
    order = purchase.cancel_checkout(own_order(public_id))
    if order.status == "canceled":
        flash(_("Checkout canceled. You have not been charged."), "info")
        return redirect(url_for("shop.review", lookup_key=order.lookup_key))
    return redirect(url_for("orders.show", public_id=public_id))
