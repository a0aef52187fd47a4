"""Subscriptions against the running store and the sandbox: start (our page, saved card,
Checkout), renewals through the sandbox clock, a failed renewal paid with another card, plan
changes, cancel / resume, Lifetime, out-of-order and duplicate events, ownership."""
from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order, PointsEntry, Subscription, User
from storefront.services import fulfilment

from .conftest import browser_confirm

MONTH = 31 * 86400


# --- helpers ----------------------------------------------------------------------------------

def flush(sandbox):
    assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 20})["idle"]


def advance(sandbox, seconds=MONTH):
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": seconds})


def customer_id(app, email="buyer@example.com") -> str:
    with app.app_context():
        return db.session.scalar(select(User.stripe_customer_id).where(User.email == email))


def save_card(app, sandbox, pm="pm_card_visa", email="buyer@example.com"):
    return sandbox.stripe.v1.payment_methods.attach(pm, params={"customer": customer_id(app, email)})


def balance(app, email="buyer@example.com") -> int:
    with app.app_context():
        return db.session.scalar(select(User.points_balance).where(User.email == email))


def ledger(app) -> list[tuple[str, int]]:
    with app.app_context():
        return [(e.key, e.amount) for e in db.session.scalars(select(PointsEntry)
                                                              .order_by(PointsEntry.id))]


def sub_row(app, email="buyer@example.com") -> Subscription | None:
    with app.app_context():
        row = db.session.scalar(select(Subscription).join(User, User.id == Subscription.user_id)
                                .where(User.email == email).order_by(Subscription.id.desc()))
        if row is not None:
            db.session.expunge(row)
        return row


def invoice_orders(app) -> list[Order]:
    with app.app_context():
        rows = db.session.scalars(select(Order).where(Order.method == "subscription_invoice")
                                  .order_by(Order.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def subscribe(client, lookup_key="starter_monthly", **form) -> str:
    """Start a plan on our page; returns the first invoice's order public id."""
    form.setdefault("attempt", "a1")
    response = client.post(f"/account/subscribe/{lookup_key}", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = re.fullmatch(r"/orders/(ord_[\w-]+)/pay", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def pay_saved(client, order_id, pm_id, attempt="p1"):
    return client.post(f"/orders/{order_id}/pay/saved-card",
                       data={"payment_method": pm_id, "attempt": attempt},
                       headers={"Accept": "application/json"})


def subscribed(app, client, sandbox, lookup_key="starter_monthly", pm="pm_card_visa"):
    card = save_card(app, sandbox, pm)
    order_id = subscribe(client, lookup_key)
    reply = pay_saved(client, order_id, card.id).get_json()
    assert reply["order_status"] == "paid", reply
    return order_id, card


def stripe_sub(sandbox, app, email="buyer@example.com"):
    return sandbox.stripe.v1.subscriptions.retrieve(sub_row(app, email).stripe_subscription_id)


# --- starting on our page -------------------------------------------------------------------------

def test_subscribe_creates_an_incomplete_subscription_and_its_first_invoice_order(app, buyer, sandbox):
    order_id = subscribe(buyer, "advanced_monthly", amount="1")
    order = invoice_orders(app)[0]
    assert order.public_id == order_id
    assert (order.amount, order.currency, order.points, order.status) == (1500, "usd", 2000, "pending")
    sub = sandbox.stripe.v1.subscriptions.retrieve(order.stripe_subscription_id)
    assert sub.status == "incomplete" and sub.items.data[0].price.lookup_key == "advanced_monthly"
    assert sub.latest_invoice == order.stripe_invoice_id
    invoice = sandbox.stripe.v1.invoices.retrieve(order.stripe_invoice_id,
                                                  params={"expand": ["confirmation_secret"]})
    assert invoice.confirmation_secret.client_secret.startswith(order.stripe_payment_intent_id)
    row = sub_row(app)
    assert row.status == "incomplete" and row.stripe_subscription_id == sub.id
    page = buyer.get(f"/orders/{order_id}/pay").get_data(as_text=True)
    assert 'data-client-secret="pi_' in page and "Advanced Plan" in page
    # the same form again (same attempt): one subscription at Stripe, the same order
    assert subscribe(buyer, "advanced_monthly") == order_id
    assert len(sandbox.stripe.v1.subscriptions.list(params={"status": "all"}).data) == 1


def test_status_poll_alone_activates_and_credits_the_first_month(app, buyer, sandbox):
    order_id = subscribe(buyer)
    order = invoice_orders(app)[0]
    browser_confirm(sandbox, order.stripe_payment_intent_id)  # the Payment Element
    state = buyer.get(f"/orders/{order_id}/status").get_json()
    assert state["order_status"] == "paid" and state["points_credited"] == 500
    assert sandbox.stripe.v1.subscriptions.retrieve(order.stripe_subscription_id).status == "active"
    assert sub_row(app).status == "active"
    assert ledger(app) == [(f"invoice:{order.stripe_invoice_id}", 500)]
    assert invoice_orders(app)[0].method == "subscription_invoice"


def test_saved_card_pays_the_first_invoice_and_becomes_the_subscriptions_card(app, buyer, sandbox):
    order_id, card = subscribed(app, buyer, sandbox)
    assert invoice_orders(app)[0].method == "subscription_invoice"
    sub = stripe_sub(sandbox, app)
    assert sub.status == "active" and sub.default_payment_method == card.id
    assert balance(app) == 500
    page = buyer.get("/account/billing").get_data(as_text=True)
    assert "Starter Plan" in page and "active" in page and "Next renewal" in page


def test_saved_3ds_card_needs_authentication_for_the_first_invoice(app, buyer, sandbox):
    card = save_card(app, sandbox, "pm_card_authenticationRequired")
    order_id = subscribe(buyer)
    reply = pay_saved(buyer, order_id, card.id).get_json()
    assert reply["order_status"] == "requires_action" and reply["client_secret"]
    order = invoice_orders(app)[0]
    sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}",
                    {"outcome": "complete"})
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/orders/{order_id}/status").get_json()["order_status"] == "paid"
    assert sub_row(app).status == "active" and balance(app) == 500
