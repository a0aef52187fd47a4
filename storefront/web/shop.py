from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask_login import current_user, login_required

from ..services import accounts, catalog, testcards
from .forms import PostForm

bp = Blueprint("shop", __name__)


@bp.get("/")
def index():
    prices = catalog.active_prices()  # the page's one query
    plans = [p for p in prices if p.product.category == "plan"]
    packs = [p for p in prices if p.product.category == "points"]
    return render_template("shop/index.html", plans=plans, packs=packs, buy_form=PostForm())


@bp.route("/buy/<lookup_key>", methods=["GET", "POST"])
@login_required
def buy(lookup_key: str):
    price = catalog.price_by_lookup_key(lookup_key)
    if price is None:
        abort(404)
    # Buying is built in the next issue; the Stripe customer is its first need, so make sure
    # it exists now (a Stripe outage at sign-up is healed here).
    accounts.ensure_stripe_customer(current_user)
    return render_template("shop/buy.html", price=price)


@bp.get("/test-cards")
def test_cards():
    if current_app.config["STRIPE_MODE"] == "live":
        abort(404)
    cards, source = testcards.list_test_cards()
    return render_template("shop/test_cards.html", cards=cards, source=source)


@bp.get("/healthz")
def healthz():
    return {"status": "ok", "mode": current_app.config["STRIPE_MODE"]}
