"""Buying a points pack: orders from our catalog, paid on our page, with a saved card, or
through Checkout; status pages; ownership; Stripe failing mid-purchase."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order, OrderTransition, PointsEntry, User

from .conftest import browser_confirm, found


def _find_order(app, **filters) -> Order | None:
    """The newest order matching ``filters`` (detached), or None."""
    with app.app_context():
        query = select(Order)
        for key, value in filters.items():
            query = query.where(getattr(Order, key) == value)
        order = db.session.scalar(query.order_by(Order.id.desc()))
        if order is not None:
            db.session.expunge(order)
        return order


def _order(app, **filters) -> Order:
    """The newest order matching ``filters``, asserted to exist."""
    return found(_find_order(app, **filters), "order")


def _balance(app, email="buyer@example.com") -> int:
    with app.app_context():
        return found(db.session.scalar(select(User.points_balance).where(User.email == email)), f"user {email}")


def _ledger_count(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count(PointsEntry.id))).scalar_one()


def start(client, lookup_key="points_medium", **form):
    return client.post(f"/buy/{lookup_key}", data=form)


# --- starting a payment ----------------------------------------------------------------------


def test_buy_creates_an_order_and_a_payment_intent_for_the_catalog_amount(app, buyer, sandbox):
    response = start(buyer, "points_medium", amount="1", currency="jpy")  # tampering is ignored
    assert response.status_code == 303
    order = _order(app)
    assert response.headers["Location"] == f"/orders/{order.public_id}/pay"
    assert (order.amount, order.currency, order.points, order.status) == (500, "usd", 550, "pending")
    pi = sandbox.stripe.v1.payment_intents.retrieve(order.stripe_payment_intent_id)
    assert (pi.amount, pi.currency) == (500, "usd")
    assert pi.metadata["order_id"] == order.public_id
    assert pi.customer is not None and pi.automatic_payment_methods.enabled is True
    assert pi.setup_future_usage is None


def test_save_card_sets_up_future_usage(app, buyer, sandbox):
    start(buyer, "points_small", save_card="1")
    pi = sandbox.stripe.v1.payment_intents.retrieve(_order(app).stripe_payment_intent_id)
    assert pi.setup_future_usage == "off_session"


def test_unknown_product_is_404_and_creates_nothing(app, buyer, sandbox):
    assert start(buyer, "points_gigantic").status_code == 404
    assert _find_order(app) is None


def test_subscription_plans_are_not_bought_as_one_offs(app, buyer, sandbox):
    response = start(buyer, "starter_monthly")
    assert response.status_code == 400
    assert (
        b"Subscriptions are started from your account page" in response.data
        or b"Plans are subscriptions" in response.data
    )
    assert _find_order(app) is None


def test_pay_page_mounts_the_payment_element_with_the_client_secret(app, buyer, sandbox):
    start(buyer)
    order = _order(app)
    page = buyer.get(f"/orders/{order.public_id}/pay").get_data(as_text=True)
    assert f'src="{sandbox.url}/v3/"' in page
    assert 'data-client-secret="pi_' in page and 'data-publishable-key="pk_test_' in page
    assert "sk_test" not in page


def test_stripe_failing_during_purchase_leaves_no_order(app, buyer, sandbox):
    sandbox.fault("error", count=1, path_prefix="/v1/payment_intents")
    response = start(buyer)
    assert response.status_code == 503
    assert b"Nothing was charged" in response.data
    assert _find_order(app) is None
    assert sandbox.stripe.v1.payment_intents.list().data == []
    assert start(buyer).status_code == 303  # and the next try works


def test_stripe_timing_out_during_purchase_leaves_no_order(app, buyer, sandbox):
    sandbox.control(
        "POST", "/_sandbox/faults", {"mode": "timeout", "count": 1, "seconds": 6, "path_prefix": "/v1/payment_intents"}
    )
    before = _api_calls(sandbox)
    response = start(buyer)
    assert response.status_code == 503
    assert _find_order(app) is None
    # the sandbox answers the request the store gave up on a second later: wait for that answer,
    # or the next test counts it as one of its own Stripe calls
    deadline = time.monotonic() + 10
    while _api_calls(sandbox) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _api_calls(sandbox) > before


# --- paying on our page, then the status page -----------------------------------------------------


def test_status_poll_alone_fulfils_when_no_webhook_arrives(app, buyer, sandbox):
    start(buyer)
    order = _order(app)
    assert buyer.get(f"/orders/{order.public_id}/status").get_json()["status"] == "unpaid"
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    with app.app_context():  # the poll syncs at most every few seconds: make one due now
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    state = buyer.get(f"/orders/{order.public_id}/status").get_json()
    assert state == {**state, "status": "paid", "order_status": "paid", "settled": True, "points_credited": 550}
    assert "550 points were added" in state["message"]
    assert _balance(app) == 550
    buyer.get(f"/orders/{order.public_id}/status")
    assert _balance(app) == 550 and _ledger_count(app) == 1
    page = buyer.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "Payment of $5.00 received" in page and "550 pts" in page


def _api_calls(sandbox) -> int:
    return sandbox.control("GET", "/_sandbox/conformance")["responses"]


def test_status_poll_asks_stripe_at_most_once_per_interval(app, buyer, sandbox):
    start(buyer)
    order = _order(app)
    before = _api_calls(sandbox)
    for _ in range(5):
        assert buyer.get(f"/orders/{order.public_id}/status").status_code == 200
    assert _api_calls(sandbox) - before == 1  # one sync; the other polls read the database
    with app.app_context():
        synced = db.session.scalar(select(Order.synced_at).where(Order.id == order.id))
    assert synced is not None


def test_a_declined_card_shows_the_reason_and_a_retry_succeeds(app, buyer, sandbox):
    start(buyer)
    order = _order(app)
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_visa_chargeDeclinedInsufficientFunds")
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    state = buyer.get(f"/orders/{order.public_id}/status").get_json()
    assert state["status"] == "failed"
    assert "insufficient funds" in state["message"] and "not been charged" in state["message"]
    assert state["pay_url"] == f"/orders/{order.public_id}/pay"
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_visa")
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/orders/{order.public_id}/status").get_json()["status"] == "paid"
    assert _balance(app) == 550


# --- saved cards -------------------------------------------------------------------------------------


def _save_card(app, sandbox, pm="pm_card_visa"):
    with app.app_context():
        customer = db.session.scalar(select(User.stripe_customer_id))
    return sandbox.stripe.v1.payment_methods.attach(pm, params={"customer": customer})


def _pay_saved(client, order, pm_id, attempt="a1"):
    return client.post(
        f"/orders/{order.public_id}/pay/saved-card",
        data={"payment_method": pm_id, "attempt": attempt},
        headers={"Accept": "application/json"},
    )


def test_pay_with_a_saved_card(app, buyer, sandbox):
    card = _save_card(app, sandbox)
    start(buyer)
    order = _order(app)
    assert f"ending in {card.card.last4}" in buyer.get(f"/orders/{order.public_id}/pay").get_data(as_text=True)
    reply = _pay_saved(buyer, order, card.id).get_json()
    assert reply["order_status"] == "paid" and reply["client_secret"] is None
    assert _order(app).method == "saved_card"
    assert _balance(app) == 550


def test_double_submitted_saved_card_form_confirms_once(app, buyer, sandbox):
    card = _save_card(app, sandbox)
    start(buyer)
    order = _order(app)
    first = _pay_saved(buyer, order, card.id, attempt="same").get_json()
    second = _pay_saved(buyer, order, card.id, attempt="same")
    assert first["order_status"] == "paid"
    assert second.status_code == 409  # the order is paid: nothing more to confirm
    assert second.get_json()["error"]["code"] == "order_not_payable"
    assert "already paid" in second.get_json()["error"]["message"]
    charges = sandbox.stripe.v1.charges.list(params={"payment_intent": order.stripe_payment_intent_id})
    assert len(charges.data) == 1


def test_saved_3ds_card_comes_back_for_authentication(app, buyer, sandbox):
    card = _save_card(app, sandbox, "pm_card_authenticationRequired")
    start(buyer)
    order = _order(app)
    reply = _pay_saved(buyer, order, card.id).get_json()
    assert reply["order_status"] == "requires_action"
    assert reply["client_secret"].startswith(found(order.stripe_payment_intent_id, "PaymentIntent") + "_secret_")
    sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}", {"outcome": "complete"})
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/orders/{order.public_id}/status").get_json()["status"] == "paid"


def test_saved_card_decline_shows_the_reason(app, buyer, sandbox):
    card = _save_card(app, sandbox, "pm_card_chargeCustomerFail")
    start(buyer)
    order = _order(app)
    reply = _pay_saved(buyer, order, card.id).get_json()
    assert reply["order_status"] == "failed"
    assert reply["message"] == "Your card was declined. Please try another card."
    good = _save_card(app, sandbox, "pm_card_mastercard")
    assert _pay_saved(buyer, order, good.id, attempt="a2").get_json()["order_status"] == "paid"


def test_cannot_pay_with_another_buyers_card(app, client, auth, catalog, sandbox):
    auth.signup(email="victim@example.com")
    victim_card = _save_card(app, sandbox)  # the only customer so far
    auth.logout()
    auth.signup(email="thief@example.com")
    start(client)
    order = _order(app)
    response = _pay_saved(client, order, victim_card.id)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "card_not_found"
    assert (
        sandbox.stripe.v1.payment_intents.retrieve(order.stripe_payment_intent_id).status == "requires_payment_method"
    )


# --- ownership -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/orders/{id}", "/orders/{id}/status", "/orders/{id}/pay", "/orders/{id}/canceled"])
def test_a_buyer_cannot_see_another_buyers_order(app, client, auth, catalog, sandbox, path):
    auth.signup(email="first@example.com")
    start(client)
    order = _order(app)
    auth.logout()
    auth.signup(email="second@example.com")
    assert client.get(path.format(id=order.public_id)).status_code == 404


def test_order_pages_need_a_login(app, client, catalog, sandbox):
    response = client.get("/orders/ord_whatever/status")
    assert response.status_code in (302, 401)


# --- Checkout redirect ---------------------------------------------------------------------------------


def test_checkout_redirect_then_paid(app, buyer, sandbox):
    response = start(buyer, method="checkout")
    assert response.status_code == 303
    order = _order(app)
    session_id = order.stripe_checkout_session_id
    assert response.headers["Location"] == f"{sandbox.url}/c/pay/{session_id}"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(session_id, params={"expand": ["line_items"]})
    assert session.amount_total == 500 and session.client_reference_id == order.public_id
    assert session.success_url.endswith(f"/orders/{order.public_id}?session_id={{CHECKOUT_SESSION_ID}}")
    assert session.line_items.data[0].price.lookup_key == "points_medium"
    sandbox.control("POST", f"/_sandbox/checkout/{session_id}/pay", {"payment_method": "pm_card_visa"})
    page = buyer.get(f"/orders/{order.public_id}?session_id={session_id}").get_data(as_text=True)
    assert "Payment of $5.00 received" in page
    assert _balance(app) == 550


def test_leaving_checkout_cancels_the_order_and_expires_the_session(app, buyer, sandbox):
    start(buyer, method="checkout")
    order = _order(app)
    page = buyer.get(f"/orders/{order.public_id}/canceled")  # Stripe's cancel_url: a GET
    assert page.status_code == 200 and "You left Checkout" in page.get_data(as_text=True)
    assert f'action="/orders/{order.public_id}/cancel"' in page.get_data(as_text=True)
    response = buyer.post(f"/orders/{order.public_id}/cancel")
    assert response.headers["Location"] == "/buy/points_medium"
    assert _order(app).status == "canceled"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(order.stripe_checkout_session_id)
    assert session.status == "expired"
    with app.app_context():
        sources = db.session.scalars(select(OrderTransition.source).where(OrderTransition.order_id == order.id)).all()
    assert sources == ["buyer", "buyer"]


def test_lifetime_grants_the_entitlement_and_cannot_be_bought_twice(app, buyer, sandbox):
    start(buyer, "lifetime")
    order = _order(app)
    assert order.amount == 40000 and order.points == 50000
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/orders/{order.public_id}/status").get_json()["status"] == "paid"
    with app.app_context():
        assert db.session.scalar(select(User.lifetime_since)) is not None
    again = start(buyer, "lifetime")
    assert again.status_code == 409
    assert b"already own the Lifetime plan" in again.data


def test_points_history_lists_the_ledger(app, buyer, sandbox):
    start(buyer, "points_small")
    order = _order(app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    buyer.get(f"/orders/{order.public_id}/status")
    page = buyer.get("/account/points").get_data(as_text=True)
    assert "+200" in page and "Small Points Pack" in page


# --- GET never changes an order; Stripe's real state wins ---------------------------------------


def test_the_checkout_cancel_url_changes_nothing_on_get(app, buyer, sandbox):
    """Finding 14: a GET (a link, a prefetch, an <img> on another site) must not cancel."""
    start(buyer, method="checkout")
    order = _order(app)
    for _ in range(2):
        assert buyer.get(f"/orders/{order.public_id}/canceled").status_code == 200
    assert _order(app).status == "pending"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(order.stripe_checkout_session_id)
    assert session.status == "open"


def test_the_checkout_cancel_url_shows_a_payment_made_meanwhile(app, buyer, sandbox):
    start(buyer, method="checkout")
    order = _order(app)
    sandbox.control(
        "POST", f"/_sandbox/checkout/{order.stripe_checkout_session_id}/pay", {"payment_method": "pm_card_visa"}
    )
    response = buyer.get(f"/orders/{order.public_id}/canceled")
    assert response.headers["Location"] == f"/orders/{order.public_id}"
    assert _order(app).status == "paid"


def test_saved_card_while_stripe_is_unreachable_says_so(app, buyer, sandbox):
    """Finding 13: not "We couldn't find that card" (404) but 503, and nothing charged."""
    card = _save_card(app, sandbox)
    start(buyer)
    order = _order(app)
    sandbox.fault("error", count=10, path_prefix="/v1/payment_methods")
    response = _pay_saved(buyer, order, card.id)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "payment_provider_unavailable"
    assert "not responding" in error["message"] and "Nothing was charged" in error["message"]
    sandbox.clear_faults()
    pi = sandbox.stripe.v1.payment_intents.retrieve(order.stripe_payment_intent_id)
    assert pi.status == "requires_payment_method" and _order(app).status == "pending"


def test_an_unknown_card_is_still_not_found(app, buyer, sandbox):
    start(buyer)
    order = _order(app)
    for pm in ("pm_doesNotExist", "pm_card_visa\n", "card_123"):
        response = _pay_saved(buyer, order, pm)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "card_not_found"


def test_second_tab_saved_card_after_the_first_tab_paid_shows_paid(app, buyer, sandbox):
    """Finding 13: tab 1 paid with the Payment Element (no webhook yet, the order still says
    pending); tab 2 submits a saved card. Stripe refuses the second confirm; the answer must be
    the PaymentIntent's real state, not "Something went wrong"."""
    card = _save_card(app, sandbox, "pm_card_mastercard")
    start(buyer)
    order = _order(app)
    assert browser_confirm(sandbox, order.stripe_payment_intent_id).status == "succeeded"
    assert _order(app).status == "pending"
    response = _pay_saved(buyer, order, card.id, attempt="tab-2")
    assert response.status_code == 200
    reply = response.get_json()
    assert reply["order_status"] == "paid" and "already paid" in reply["message"]
    charges = sandbox.stripe.v1.charges.list(params={"payment_intent": order.stripe_payment_intent_id})
    assert len(charges.data) == 1 and charges.data[0].payment_method_details.card.brand == "visa"
    assert _balance(app) == 550
