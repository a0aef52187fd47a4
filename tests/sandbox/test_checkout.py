"""Checkout Sessions through the official SDK: create, line items, pay, decline, expire, modes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import stripe


@pytest.fixture
def prices(client):
    one_time = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 2500, "product_data": {"name": "T-shirt"}}
    )
    monthly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1000,
            "product_data": {"name": "Starter"},
            "recurring": {"interval": "month"},
        }
    )
    return {"one_time": one_time, "monthly": monthly}


def pay(sandbox, session_id: str, payment_method: str, email: str | None = None) -> tuple[int, dict]:
    body: dict[str, Any] = {"payment_method": payment_method}
    if email is not None:
        body["email"] = email  # what the buyer types on the hosted page
    request = urllib.request.Request(
        f"{sandbox.url}/_sandbox/checkout/{session_id}/pay",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def payment_session(client, prices, **extra):
    params = {
        "mode": "payment",
        "line_items": [{"price": prices["one_time"].id, "quantity": 2}],
        "success_url": "https://shop.test/ok?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.test/cart",
    }
    params.update(extra)
    return client.v1.checkout.sessions.create(params=params)


def test_create_payment_session(client, sandbox, prices):
    session = payment_session(
        client, prices, client_reference_id="order-7", metadata={"order_id": "7"}, customer_email="buyer@shop.test"
    )
    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert session.amount_subtotal == session.amount_total == 5000
    assert session.currency == "usd"
    assert session.url == f"{sandbox.url}/c/pay/{session.id}"
    assert session.success_url == "https://shop.test/ok?session_id={CHECKOUT_SESSION_ID}"
    assert session.cancel_url == "https://shop.test/cart"
    assert session.client_reference_id == "order-7"
    assert session.metadata.to_dict() == {"order_id": "7"}
    assert session.customer_email == "buyer@shop.test"
    assert session.payment_intent is None  # created when the buyer pays, as Stripe does now
    assert 24 * 3600 - 5 <= session.expires_at - session.created <= 24 * 3600
    assert "line_items" not in session  # includable: only when expanded
    again = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    (item,) = again.line_items.data
    assert (item.object, item.quantity, item.amount_total, item.description) == ("item", 2, 5000, "T-shirt")
    assert item.price.id == prices["one_time"].id
    listed = client.v1.checkout.sessions.line_items.list(session.id)
    assert [i.id for i in listed.data] == [item.id]
    assert listed.url == f"/v1/checkout/sessions/{session.id}/line_items"
    sessions = client.v1.checkout.sessions.list(params={"status": "open"})
    assert [s.id for s in sessions.data] == [session.id]


def test_price_data_and_subscription_mode(client, prices):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "success_url": "https://shop.test/ok",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 1500,
                        "product_data": {"name": "Advanced"},
                        "recurring": {"interval": "month"},
                    },
                }
            ],
        }
    )
    assert (session.mode, session.amount_total, session.currency) == ("subscription", 1500, "eur")
    (item,) = client.v1.checkout.sessions.line_items.list(session.id).data
    assert item.price.recurring.interval == "month"
    assert item.description == "Advanced"


@pytest.mark.parametrize(
    "case, param, message",
    [
        ("missing", "line_items[0][price]", "No such price"),
        ("inactive", "line_items[0][price]", "inactive"),
        ("recurring_in_payment", "line_items[0][price]", "recurring price"),
        ("one_time_in_subscription", "line_items", "at least one recurring price"),
        ("expires_too_soon", "expires_at", "at least 30 minutes"),
        ("expires_too_late", "expires_at", "less than 24 hours"),
    ],
)
def test_create_refusals(client, prices, case, param, message):
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": "https://shop.test/ok",
        "line_items": [{"price": prices["one_time"].id, "quantity": 1}],
    }
    if case == "missing":
        params["line_items"][0]["price"] = "price_doesnotexist"
    elif case == "inactive":
        client.v1.prices.update(prices["one_time"].id, params={"active": False})
    elif case == "recurring_in_payment":
        params["line_items"][0]["price"] = prices["monthly"].id
    elif case == "one_time_in_subscription":
        params["mode"] = "subscription"
    elif case == "expires_too_soon":
        params["expires_at"] = int(time.time()) + 600
    elif case == "expires_too_late":
        params["expires_at"] = int(time.time()) + 25 * 3600
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=params)
    assert raised.value.http_status == 400
    assert raised.value.param == param
    assert message in raised.value.user_message
    if case == "missing":
        assert raised.value.code == "resource_missing"


def test_unsupported_parameter_is_refused(client, prices):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        payment_session(client, prices, allow_promotion_codes=True)
    assert raised.value.code == "parameter_unsupported"


def test_pay_completes_session_and_sends_webhook(client, sandbox, prices, endpoint, receiver):
    session = payment_session(client, prices, payment_intent_data={"metadata": {"order": "9"}})
    status, paid = pay(sandbox, session.id, "pm_card_visa")
    assert status == 200
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert paid["url"] is None
    session = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert session.payment_intent.status == "succeeded"
    assert session.payment_intent.amount == 5000
    assert session.payment_intent.metadata.to_dict() == {"order": "9"}
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "checkout.session.completed" in r.types())
    raw = next(r for r in receiver.requests if json.loads(r["body"])["type"] == "checkout.session.completed")
    event = stripe.Webhook.construct_event(raw["body"], raw["headers"]["Stripe-Signature"], endpoint.secret)
    assert event.data.object.id == session.id
    assert event.data.object.payment_status == "paid"
    assert receiver.types().index("payment_intent.succeeded") < receiver.types().index("checkout.session.completed")
    # a complete session refuses to take money twice
    status, body = pay(sandbox, session.id, "pm_card_visa")
    assert status == 400
    assert "already complete" in body["error"]["message"]
    assert body["session"]["status"] == "complete"


def test_decline_leaves_session_open(client, sandbox, prices):
    session = payment_session(client, prices)
    status, body = pay(sandbox, session.id, "pm_card_chargeDeclined")
    assert status == 402
    assert body["error"]["type"] == "card_error"
    assert body["error"]["decline_code"] == "generic_decline"
    assert (body["session"]["status"], body["session"]["payment_status"]) == ("open", "unpaid")
    status, body = pay(sandbox, session.id, "pm_card_visa")
    assert status == 200 and body["status"] == "complete"
    assert client.v1.payment_intents.retrieve(body["payment_intent"]).status == "succeeded"


def test_three_d_secure_completes_after_authentication(client, sandbox, prices):
    session = payment_session(client, prices)
    status, body = pay(sandbox, session.id, "pm_card_authenticationRequired")
    assert status == 200 and body["status"] == "open"
    pi = client.v1.payment_intents.retrieve(body["payment_intent"])
    assert pi.status == "requires_action"
    sandbox.control("POST", f"authenticate/{pi.id}", {"outcome": "complete"})
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")


def test_expire_by_api(client, sandbox, prices, endpoint, receiver):
    session = payment_session(client, prices)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.expire(session.id)
    assert 'status of "expired"' in raised.value.user_message
    status, body = pay(sandbox, session.id, "pm_card_visa")
    assert status == 400 and "expired" in body["error"]["message"]
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "checkout.session.expired" in r.types())
    assert client.v1.payment_intents.list().data == []


def test_expire_by_clock(client, sandbox, prices):
    session = payment_session(client, prices, expires_at=int(time.time()) + 3600)
    sandbox.advance_clock(1800)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    sandbox.advance_clock(1900)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    events = client.v1.events.list(params={"type": "checkout.session.expired"}).data
    assert len(events) == 1 and events[0].created >= session.expires_at


def test_subscription_mode_creates_active_subscription(client, sandbox, prices, endpoint, receiver):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "sub@shop.test",
            "success_url": "https://shop.test/ok?session_id={CHECKOUT_SESSION_ID}",
            "line_items": [{"price": prices["monthly"].id, "quantity": 1}],
            "subscription_data": {"metadata": {"plan": "starter"}},
        }
    )
    status, body = pay(sandbox, session.id, "pm_card_visa")
    assert status == 200
    assert (body["status"], body["payment_status"]) == ("complete", "paid")
    session = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["subscription", "invoice", "customer"]}
    )
    assert session.customer.email == "sub@shop.test"
    assert session.subscription.status == "active"
    assert session.subscription.metadata.to_dict() == {"plan": "starter"}
    assert session.subscription.default_payment_method
    assert session.invoice.status == "paid" and session.invoice.amount_paid == 1000
    assert session.invoice.billing_reason == "subscription_create"
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "checkout.session.completed" in r.types())
    types = receiver.types()
    for expected in ("customer.created", "customer.subscription.created", "invoice.paid"):
        assert expected in types


def test_delayed_method_completes_unpaid_then_succeeds(client, sandbox):
    price = client.v1.prices.create(params={"currency": "eur", "unit_amount": 1200, "product_data": {"name": "Mug"}})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "allowed_payment_method_types": ["card", "sepa_debit"],
            "success_url": "https://shop.test/ok",
            "line_items": [{"price": price.id, "quantity": 1}],
        }
    )
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@shop.test"},
        }
    )
    status, body = pay(sandbox, session.id, pm.id)
    assert status == 200
    assert (body["status"], body["payment_status"]) == ("complete", "unpaid")
    sandbox.advance_clock(3600)
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.payment_status == "paid"
    types = [e.type for e in client.v1.events.list().data]
    assert "checkout.session.async_payment_succeeded" in types
    assert "checkout.session.completed" in types


def test_unknown_session(client, sandbox):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert raised.value.http_status == 404
    status, _ = pay(sandbox, "cs_test_nope", "pm_card_visa")
    assert status == 404


def test_subscription_mode_with_three_d_secure_and_a_decline_first(client, sandbox, prices, endpoint, receiver):
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "3ds@shop.test",
            "success_url": "https://shop.test/ok",
            "line_items": [
                {"price": prices["monthly"].id, "quantity": 1},
                {"price": prices["one_time"].id, "quantity": 1},
            ],
        }
    )
    assert session.amount_total == 3500
    status, body = pay(sandbox, session.id, "pm_card_chargeCustomerFail")
    assert status == 402 and body["session"]["status"] == "open"
    status, body = pay(sandbox, session.id, "pm_card_authenticationRequired")
    assert status == 200 and body["status"] == "open"
    invoice = client.v1.invoices.retrieve(body["invoice"], params={"expand": ["payments"]})
    assert invoice.total == 3500 and len(invoice.lines.data) == 2
    pi_id = invoice.payments.data[0].payment.payment_intent
    assert client.v1.payment_intents.retrieve(pi_id).status == "requires_action"
    sandbox.control("POST", f"authenticate/{pi_id}", {"outcome": "complete"})
    session = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.subscription.status == "active"
    assert len(client.v1.customers.list(params={"email": "3ds@shop.test"}).data) == 1
    assert sandbox.flush_webhooks()
    assert receiver.wait_for(lambda r: "checkout.session.completed" in r.types())
    assert receiver.types().count("checkout.session.completed") == 1


def test_a_configured_merchant_name_is_shown_wherever_the_business_is_named(tmp_path):
    """``merchant_name`` (``--merchant-name``, ``SANDBOX_MERCHANT_NAME``): the hosted Checkout
    page, the 3-D Secure page and invoices' ``account_name`` name the business."""
    from stripe_sandbox.testing import SandboxServer

    server = SandboxServer(tmp_path / "state.sqlite3", merchant_name="Acme Books").start()
    try:
        client = stripe.StripeClient("sk_test_merchant", base_addresses={"api": server.url}, max_network_retries=0)
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 1500,
                "product_data": {"name": "Atlas"},
                "recurring": {"interval": "month"},
            }
        )
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://shop.test/ok",
            }
        )
        with urllib.request.urlopen(str(session.url), timeout=10) as response:
            page = response.read().decode()
        assert "Subscribe to Acme Books" in page and "Storefront (sandbox)" not in page
        assert '"business": "Acme Books"' in page  # what the page hands Stripe.js
        pi = client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "payment_method": "pm_card_authenticationRequired",
                "confirm": True,
                "return_url": "https://shop.test/back",
            }
        )
        assert pi.status == "requires_action"
        with urllib.request.urlopen(f"{server.url}/_sandbox/3ds/{pi.id}", timeout=10) as response:
            assert "<dd>Acme Books</dd>" in response.read().decode()
        customer = client.v1.customers.create(params={"email": "acme@shop.test"})
        sub = client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": price.id}], "payment_behavior": "default_incomplete"}
        )
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert invoice.account_name == "Acme Books"
    finally:
        server.stop()


def test_the_default_merchant_name(client, sandbox, prices):
    session = payment_session(client, prices)
    with urllib.request.urlopen(str(session.url), timeout=10) as response:
        assert "Pay Storefront (sandbox)" in response.read().decode()
    customer = client.v1.customers.create(params={"email": "default@shop.test"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": prices["monthly"].id}],
            "payment_behavior": "default_incomplete",
        }
    )
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).account_name == "Stripe Sandbox"


def test_a_session_without_customer_or_email_takes_the_email_the_buyer_types(client, sandbox, prices):
    """Guest checkout: no customer, no customer_email -- Checkout asks; the address becomes the
    session's customer_details.email, and no customer is created for a one-time payment
    (customer_creation defaults to if_required)."""
    session = payment_session(client, prices)
    assert session.customer is None and session.customer_email is None and session.customer_creation == "if_required"
    status, body = pay(sandbox, session.id, "pm_card_visa", email="not-an-address")
    assert status == 400
    status, body = pay(sandbox, session.id, "pm_card_visa", email="guest@shop.test")
    assert status == 200 and body["status"] == "complete" and body["payment_status"] == "paid"
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert paid.customer is None and paid.customer_details is not None
    assert paid.customer_details.email == "guest@shop.test"
    completed = [
        event
        for event in client.v1.events.list(params={"type": "checkout.session.completed"}).data
        if event.data.object["id"] == session.id
    ]
    assert completed and completed[0].data.object["customer_details"]["email"] == "guest@shop.test"
