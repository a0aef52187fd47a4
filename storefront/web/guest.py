"""The store's own pages for a guest checkout (issue 14; ``services/guest_orders.py``): where
Checkout sends a buyer with no account back when the front end gave no usable URL of its own.

* ``GET /checkout/status?session_id=cs_…`` -- the order's status in words (no sign-in: the
  session id is the buyer's capability, as for ``/api/check-payment-status``); reloads itself
  (``<meta refresh>``: no script) until the payment is settled. Nothing about the buyer shown.
* ``GET /checkout/<order id>/canceled[?return_to=<front end URL>]`` -- Checkout's cancel URL:
  the session is expired (it can't be paid later; the order is canceled, so a front end polling
  check-payment-status sees ``canceled``), then the buyer goes to the front end's cancel page
  (``session_id`` added) when its origin is in ``API_CORS_ORIGINS``, else sees our page. A GET
  that changes state, deliberately: Checkout only sends the buyer here when they leave it, the
  URL names an unguessable order id, and expiring an unpaid session is what leaving means.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, make_response, redirect, render_template, request
from flask_babel import gettext as _

from ..models import Order
from ..models.order import SETTLED
from ..services import guest_orders
from .cors import origin_allowed
from .order_status import BUYER_STATUS, buyer_message
from .security import NO_STORE

bp = Blueprint("guest", __name__, url_prefix="/checkout")

MAX_URL_LENGTH = 2000


def front_end_url(value: Any) -> str | None:
    """``value`` if it is a URL whose origin is in ``API_CORS_ORIGINS`` (``web/cors.py``, read
    at request time: absolute http(s), no user info, no control characters), else None."""
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH or not origin_allowed(value):
        return None
    return value


@bp.get("/status")
def status():
    session_id = request.args.get("session_id", "")
    order = guest_orders.order_for_session(session_id) if session_id else None
    if order is None:
        abort(404)
    return _no_store(
        render_template(
            "guest/status.html",
            order=order,
            status=BUYER_STATUS[order.status],
            message=_message(order),
            settled=order.status in SETTLED,
        )
    )


def _no_store(page: str) -> Response:
    """The page names a capability (the session id) and a live status: no cache keeps it."""
    response = make_response(page)
    response.headers["Cache-Control"] = NO_STORE
    return response


def _message(order: Order) -> str:
    if order.status == "paid" and order.user_id is None:
        return _(
            "Thank you: your payment went through and a receipt is on its way to the email address you "
            "gave at checkout. To get what you bought, sign in to (or create) the account with that "
            "address and confirm the address: it is added then."
        )
    if order.status == "paid":
        return _("Thank you: your payment went through, and what you bought is in the account with your email address.")
    return buyer_message(order)


@bp.get("/<public_id>/canceled")
def canceled(public_id: str):
    order = guest_orders.leave_checkout(public_id) if len(public_id) <= 64 else None
    if order is None:
        abort(404)
    target = front_end_url(request.args.get("return_to"))
    if target and order.stripe_checkout_session_id:
        return redirect(guest_orders.with_query(target, "session_id", order.stripe_checkout_session_id), code=303)
    return _no_store(
        render_template(
            "guest/status.html",
            order=order,
            status=BUYER_STATUS[order.status],
            message=_message(order)
            if order.status != "canceled"
            else _("You left Checkout: nothing was charged and the order is canceled."),
            settled=True,
        )
    )
