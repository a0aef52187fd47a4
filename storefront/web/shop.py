from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

from ..services import catalog, purchase, testcards
from ..services.errors import ServiceError
from . import page_cache
from .orders import checkout_return_urls

bp = Blueprint("shop", __name__)


def _render_index(rows: tuple[tuple, ...]) -> str:
    items = catalog.catalog_items(rows)
    return render_template(
        "shop/index.html",
        plans=[i for i in items if i.category == "plan"],
        packs=[i for i in items if i.category == "points"],
    )


@bp.get("/")
def index():
    rows = catalog.catalog_rows()  # the page's one query
    if current_user.is_authenticated or session:
        # Personal page: CSRF-protected buy forms, flashed messages, the user's name.
        return _render_index(rows)
    # Anonymous: the same bytes for everyone until the catalog changes. Hand them to the
    # WSGI fast path (web/page_cache.py), which serves the next anonymous visits itself.
    response = make_response(_render_index(rows))
    response.vary.add("Cookie")
    if not request.cookies and not request.query_string:
        page_cache.offer(request.environ, rows)  # stored once after_request has run
    return response


@bp.get("/buy/<lookup_key>")
@login_required
def review(lookup_key: str):
    """Review what is about to be bought (anonymous buy buttons land here after log-in)."""
    price = catalog.price_by_lookup_key(lookup_key)
    if price is None:
        abort(404)
    return render_template("shop/buy.html", price=price)


@bp.post("/buy/<lookup_key>")
@login_required
def buy(lookup_key: str):
    """Start paying: on our page (Payment Element) or on Stripe's (Checkout redirect)."""
    price = catalog.price_by_lookup_key(lookup_key)
    if price is None:
        abort(404)
    try:
        if request.form.get("method") == "checkout":
            order, url = purchase.start_checkout(current_user, price, return_urls=checkout_return_urls)
            return redirect(url, code=303)
        order = purchase.start_payment(current_user, lookup_key, save_card=request.form.get("save_card") == "1")
    except ServiceError as err:  # re-render the form with the message
        flash(err.message, "error")
        return render_template("shop/buy.html", price=price), err.status
    return redirect(url_for("pay.page", public_id=order.public_id), code=303)


@bp.get("/test-cards")
def test_cards():
    if current_app.config["STRIPE_MODE"] == "live":
        abort(404)
    cards, source = testcards.list_test_cards()
    return render_template("shop/test_cards.html", cards=cards, source=source)
