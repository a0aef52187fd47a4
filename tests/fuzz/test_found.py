"""Failures the fuzz suite found, pinned as plain tests (each failed before its fix)."""
from __future__ import annotations

import json

import pytest

from ..conftest import TEST_PASSWORD

FORM_ROUTES = ["/signup", "/login", "/logout", "/account/password"]
NOT_A_FORM = ['"1"', "1", "[1]", "null", "[[\"email\", \"x\"]]", '{"email": 5, "password": 12345678901}',
              '{"password": ["a", "b"], "confirm": {"x": 1}, "name": null, "email": true}',
              '{"current_password": 5, "password": [], "confirm": 7}']


@pytest.mark.parametrize("path", FORM_ROUTES)
def test_a_json_body_that_is_not_an_object_of_strings_is_a_400(app, buyer, client, path):
    """Flask-WTF reads a JSON body as the form: a list or a number made it raise (500), and
    non-string values reached the validators (``password_problems(5)`` -> 500)."""
    if path in ("/signup", "/login"):
        client.post("/logout")
    answers = {body: client.post(path, data=body, content_type="application/json").status_code
               for body in NOT_A_FORM}
    expected = {302, 400} if path == "/logout" else {400}  # log-out without a token: back home
    assert {body: status for body, status in answers.items() if status not in expected} == {}


def test_a_json_object_of_strings_still_logs_in(app, client, auth, catalog):
    auth.signup(email="json@example.com")
    client.post("/logout")
    response = client.post("/login", data=json.dumps({"email": "json@example.com", "password": TEST_PASSWORD}),
                           content_type="application/json")
    assert response.status_code == 302


def test_an_uploaded_file_never_reaches_a_text_field(app, client, catalog):
    import io
    response = client.post("/signup", data={"email": "file@example.com", "name": "F",
                                            "password": (io.BytesIO(b"x" * 20), "p.txt"),
                                            "confirm": (io.BytesIO(b"x" * 20), "p.txt")},
                           content_type="multipart/form-data")
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
