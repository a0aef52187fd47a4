"""The JSON API of the seed contract: create-checkout-session and check-payment-status."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storefront.extensions import db, limiter
from storefront.models import Order, Price

from .conftest import found


def _price_id(app, lookup_key: str) -> str:
    with app.app_context():
        return db.session.scalar(select(Price.stripe_price_id).where(Price.lookup_key == lookup_key))


def _create(client, body):
    return client.post("/api/create-checkout-session", json=body)


def test_create_checkout_session_uses_our_catalog_amount(app, buyer, sandbox):
    response = _create(buyer, {"priceId": _price_id(app, "points_small"), "amount": 1})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"url", "sessionId"}
    assert body["url"] == f"{sandbox.url}/c/pay/{body['sessionId']}"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(body["sessionId"])
    assert session.amount_total == 200 and session.currency == "usd"


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 400, "invalid_price_id"),
        ({"priceId": 42}, 400, "invalid_price_id"),
        ({"priceId": "prod_123"}, 400, "invalid_price_id"),
        ({"priceId": "price_<script>"}, 400, "invalid_price_id"),
        ({"priceId": "price_123\n"}, 400, "invalid_price_id"),  # "$" alone lets the newline in
        ({"priceId": "price_١٢٣"}, 400, "invalid_price_id"),
        ({"priceId": "price_doesNotExist123"}, 404, "price_not_found"),
    ],
)
def test_bad_price_ids_are_refused_with_json_errors(app, buyer, sandbox, body, status, code):
    response = _create(buyer, body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
    with app.app_context():
        assert db.session.scalar(select(Order.id)) is None


def test_amount_and_currency_rules_come_from_the_catalog(app, buyer, sandbox):
    with app.app_context():
        price = found(db.session.scalar(select(Price).where(Price.lookup_key == "points_small")), "points_small")
        price.unit_amount = 20
        db.session.commit()
    assert _create(buyer, {"priceId": _price_id(app, "points_small")}).get_json()["error"]["code"] == "amount_too_small"
    with app.app_context():
        price = found(db.session.scalar(select(Price).where(Price.lookup_key == "points_small")), "points_small")
        price.unit_amount, price.currency = 200, "xyz"
        db.session.commit()
    assert (
        _create(buyer, {"priceId": _price_id(app, "points_small")}).get_json()["error"]["code"]
        == "currency_not_supported"
    )
    with app.app_context():
        price = found(db.session.scalar(select(Price).where(Price.lookup_key == "points_small")), "points_small")
        price.unit_amount, price.currency = 100_000_000, "usd"
        db.session.commit()
    assert _create(buyer, {"priceId": _price_id(app, "points_small")}).get_json()["error"]["code"] == "amount_too_large"


def test_without_a_session_it_is_a_guest_checkout_not_a_401(app, client, catalog, sandbox):
    """No login needed any more (issue 14): a call with no session is a guest checkout
    (tests/test_api_guest.py); an unknown price is still refused."""
    response = _create(client, {"priceId": "price_abc"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "price_not_found"


def test_api_post_needs_the_csrf_token_when_csrf_is_on(app, buyer, sandbox):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = _create(buyer, {"priceId": _price_id(app, "points_small")})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "csrf_failed"


def test_check_payment_status_follows_the_session(app, buyer, sandbox):
    session_id = _create(buyer, {"priceId": _price_id(app, "points_medium")}).get_json()["sessionId"]
    assert buyer.get(f"/api/check-payment-status/{session_id}").get_json() == {"status": "unpaid"}
    sandbox.control("POST", f"/_sandbox/checkout/{session_id}/pay", {"payment_method": "pm_card_visa"})
    with app.app_context():
        db.session.execute(db.update(Order).values(synced_at=None))
        db.session.commit()
    assert buyer.get(f"/api/check-payment-status/{session_id}").get_json() == {"status": "paid"}


def test_check_payment_status_of_an_expired_session(app, buyer, sandbox):
    session_id = _create(buyer, {"priceId": _price_id(app, "points_medium")}).get_json()["sessionId"]
    sandbox.stripe.v1.checkout.sessions.expire(session_id)
    assert buyer.get(f"/api/check-payment-status/{session_id}").get_json() == {"status": "expired"}


def test_check_payment_status_answers_whoever_holds_the_session_id(app, client, auth, catalog, sandbox):
    """The session id is the capability (issue 14): another buyer, or nobody signed in, gets the
    status and nothing else; an unknown id is 404."""
    auth.signup(email="owner@example.com")
    session_id = _create(client, {"priceId": _price_id(app, "points_medium")}).get_json()["sessionId"]
    auth.logout()
    auth.signup(email="other@example.com")
    assert client.get(f"/api/check-payment-status/{session_id}").get_json() == {"status": "unpaid"}
    assert app.test_client().get(f"/api/check-payment-status/{session_id}").get_json() == {"status": "unpaid"}
    response = client.get(f"/api/check-payment-status/{session_id}x")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "session_not_found"


def test_rate_limit_is_100_per_minute_per_ip(app, buyer, sandbox):
    limiter.reset()
    statuses = [buyer.get("/api/check-payment-status/cs_nope").status_code for _ in range(101)]
    assert statuses[:100] == [404] * 100
    assert statuses[100] == 429
    last = buyer.get("/api/check-payment-status/cs_nope").get_json()
    assert last["error"]["code"] == "rate_limit_exceeded"
