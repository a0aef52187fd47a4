"""Failures the fuzz suite found, pinned as plain tests (each failed before its fix)."""

from __future__ import annotations

import json

import pytest

from ..conftest import TEST_PASSWORD

FORM_ROUTES = ["/signup", "/login", "/logout", "/account/password"]
NOT_A_FORM = [
    '"1"',
    "1",
    "[1]",
    "null",
    '[["email", "x"]]',
    '{"email": 5, "password": 12345678901}',
    '{"password": ["a", "b"], "confirm": {"x": 1}, "name": null, "email": true}',
    '{"current_password": 5, "password": [], "confirm": 7}',
]


@pytest.mark.parametrize("path", FORM_ROUTES)
def test_a_json_body_that_is_not_an_object_of_strings_is_a_400(app, buyer, client, path):
    """Flask-WTF reads a JSON body as the form: a list or a number made it raise (500), and
    non-string values reached the validators (``password_problems(5)`` -> 500)."""
    if path in ("/signup", "/login"):
        client.post("/logout")
    answers = {body: client.post(path, data=body, content_type="application/json").status_code for body in NOT_A_FORM}
    expected = {302, 400} if path == "/logout" else {400}  # log-out without a token: back home
    assert {body: status for body, status in answers.items() if status not in expected} == {}


def test_a_json_object_of_strings_still_logs_in(app, client, auth, catalog):
    auth.signup(email="json@example.com")
    client.post("/logout")
    response = client.post(
        "/login",
        data=json.dumps({"email": "json@example.com", "password": TEST_PASSWORD}),
        content_type="application/json",
    )
    assert response.status_code == 302


def test_an_uploaded_file_never_reaches_a_text_field(app, client, catalog):
    import io

    response = client.post(
        "/signup",
        data={
            "email": "file@example.com",
            "name": "F",
            "password": (io.BytesIO(b"x" * 20), "p.txt"),
            "confirm": (io.BytesIO(b"x" * 20), "p.txt"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 400


def _sandbox_objects(sandbox_server) -> int:
    store = sandbox_server.sandbox.store
    with store.lock:
        return store.execute("SELECT COUNT(*) FROM objects").fetchone()[0]


@pytest.mark.parametrize("action", ["default", "remove", "pay"])
def test_a_stripe_test_token_is_not_a_saved_card_and_mints_nothing(app, buyer, sandbox, sandbox_server, action):
    """``pm_card_visa`` is a test token: retrieving it makes Stripe (and the sandbox) create a
    new PaymentMethod, so the 404 for "not your card" left an object behind."""
    if action == "pay":
        order_id = buyer.post("/buy/points_small").headers["Location"].split("/")[2]
        path, data = f"/orders/{order_id}/pay/saved-card", {"payment_method": "pm_card_visa"}
    else:
        path, data = f"/account/cards/pm_card_visa/{action}", {}
    before = _sandbox_objects(sandbox_server)
    response = buyer.post(path, data=data, headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert _sandbox_objects(sandbox_server) == before


@pytest.mark.parametrize(
    "event_type,obj",
    [
        ("payment_intent.succeeded", {"id": "pi_123", "object": "payment_intent", "metadata": "ord_x"}),
        ("payment_intent.succeeded", {"id": "pi_123", "object": "payment_intent", "metadata": {"order_id": 5}}),
        ("payment_intent.succeeded", {"id": "pi_123", "object": "payment_intent", "amount_received": "500"}),
        ("invoice.paid", {"id": "in_123", "object": "invoice", "parent": "sub_x"}),
        (
            "invoice.paid",
            {"id": "in_123", "object": "invoice", "lines": {"object": "list", "data": [{"parent": ["x"]}]}},
        ),
        ("charge.refunded", {"id": "ch_123", "object": "charge", "amount_refunded": 10**20}),
        ("checkout.session.completed", {"id": "cs_123", "object": "checkout.session", "client_reference_id": 5}),
    ],
)
def test_a_signed_event_with_a_field_of_the_wrong_type_is_a_400_and_stores_nothing(
    app, client, monkeypatch, event_type, obj
):
    """Stripe's signature vouches for the sender, not for every field: a string where the
    handlers read a hash (metadata, parent) raised AttributeError deep inside them (500, event
    stored with the error); a number where they read a string or a huge amount reached the
    database."""
    import time

    from sqlalchemy import func, select

    from storefront.extensions import db
    from storefront.models import StripeEvent

    from ..conftest import sign_payload

    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", "whsec_found_test")
    payload = json.dumps(
        {
            "id": "evt_found_1",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    )
    response = client.post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(payload, "whsec_found_test")},
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(StripeEvent.id))) == 0
