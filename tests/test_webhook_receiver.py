"""The webhook route's two doors answer alike: the WSGI layer that acknowledges deliveries without
Flask (``web/webhooks.WebhookReceiver``) and the Flask view behind it give the same status, body
and headers for every kind of delivery, and store the same rows."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from storefront.extensions import db
from storefront.models import StripeEvent
from storefront.web.webhooks import PATH, WebhookReceiver

from .conftest import sign_payload
from .factories import stripe_event

SECRET = "whsec_receiver_test_secret"
#: headers every server adds for itself, not the app's answer; and ``Vary: Cookie``, which Flask
#: adds because its after-request hook looked at the session (is someone signed in?): a delivery's
#: answer depends on no cookie
_TRANSPORT = {"date", "server", "x-request-id", "vary"}


@pytest.fixture
def doors(app):
    """(the receiver layer, Flask's own WSGI app behind it), with a signing secret set."""
    layer = app.wsgi_app
    while not isinstance(layer, WebhookReceiver):
        layer = layer.wsgi_app
    app.config["STRIPE_WEBHOOK_SECRET"] = SECRET
    yield Client(layer), Client(layer.wsgi_app)
    app.config["STRIPE_WEBHOOK_SECRET"] = None


def _answer(response) -> tuple[int, dict, dict]:
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _TRANSPORT}
    return response.status_code, json.loads(response.get_data()), headers


def same(fast: tuple, view: tuple) -> None:
    """The two answers are the same (the differing headers named when not)."""
    differing = {k for k in fast[2].keys() | view[2].keys() if fast[2].get(k) != view[2].get(k)}
    assert not differing, {k: (fast[2].get(k), view[2].get(k)) for k in differing}
    assert fast[:2] == view[:2]


def _post(client: Client, body: bytes, signature: str | None, stream: io.BytesIO | None = None):
    """POST ``body`` (or, with ``stream``, a chunked body with no Content-Length)."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    if stream is None:
        return client.post(PATH, data=body, headers=headers)
    stream.seek(0)
    return client.post(PATH, input_stream=stream, headers={**headers, "Transfer-Encoding": "chunked"})


def _event(event_id: str) -> bytes:
    event = stripe_event("evt_" + event_id, "payment_intent.succeeded", {"id": "pi_" + event_id, "object": "pi"})
    return json.dumps(event).encode()


def test_a_stored_delivery_is_answered_alike_and_stored_once(app, doors):
    fast, view = doors
    answers = []
    for client, event_id in ((fast, "receiver_fast"), (view, "receiver_view")):
        body = _event(event_id)
        first = _answer(_post(client, body, sign_payload(body, SECRET)))
        again = _answer(_post(client, body, sign_payload(body, SECRET)))
        answers.append((first, again))
    for fast_answer, view_answer in zip(answers[0], answers[1], strict=True):
        same(fast_answer, view_answer)
    (status, answer, headers), _ = answers[0]
    assert (status, answer) == (200, {"received": True})
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff" and "content-security-policy" in headers
    with app.app_context():
        stored = db.session.scalars(select(StripeEvent.stripe_id).order_by(StripeEvent.stripe_id)).all()
    assert stored == ["evt_receiver_fast", "evt_receiver_view"]


@pytest.mark.parametrize(
    "case",
    ["no signature", "forged signature", "not JSON", "not an event", "too large", "too large, no length"],
)
def test_refusals_are_answered_alike_and_store_nothing(app, doors, case):
    body = _event("refused")
    signature: str | None = sign_payload(body, SECRET)
    stream = None
    if case == "no signature":
        signature = None
    elif case == "forged signature":
        signature = sign_payload(body, "whsec_someone_else")
    elif case == "not JSON":
        body = b"{not json"
        signature = sign_payload(body, SECRET)
    elif case == "not an event":
        body = b'{"object": "charge"}'
        signature = sign_payload(body, SECRET)
    elif case.startswith("too large"):
        body = b" " * (app.config.get("WEBHOOK_MAX_BYTES") or 256 * 1024) + body
        if case.endswith("no length"):  # the limit holds while reading
            stream = io.BytesIO(body)
    fast, view = doors
    answers = [_answer(_post(client, body, signature, stream)) for client in (fast, view)]
    same(*answers)
    status, error, _ = answers[0]
    assert status == (413 if case.startswith("too large") else 400)
    assert set(error["error"]) == {"code", "message", "type"}
    with app.app_context():
        assert db.session.scalar(select(StripeEvent.id)) is None


def test_other_methods_still_reach_flask(doors):
    fast, _ = doors
    assert fast.get(PATH).status_code == 405
    assert fast.put(PATH, data=b"{}").status_code == 405


def test_a_delivery_after_the_database_dropped_the_connection_is_stored(app, doors):
    """PostgreSQL stores on a pool of its own that skips the pre-ping (services/webhooks
    .autocommit_engine): a connection the server closed meanwhile (a restart, an idle timeout)
    fails the statement, and the store is retried on a fresh one -- the delivery is stored."""
    from sqlalchemy import text

    from storefront.services.webhooks import autocommit_engine

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite stores through the app's own engine: no second pool to lose a connection")
        fast, _ = doors
        first = _event("before_drop")
        assert _post(fast, first, sign_payload(first, SECRET)).status_code == 200
        with autocommit_engine().connect() as conn:  # the pooled connection the next store takes
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        second = _event("after_drop")
        assert _post(fast, second, sign_payload(second, SECRET)).get_json() == {"received": True}
        stored = db.session.scalars(select(StripeEvent.stripe_id).order_by(StripeEvent.id)).all()
        db.session.rollback()
    assert stored == ["evt_before_drop", "evt_after_drop"]
