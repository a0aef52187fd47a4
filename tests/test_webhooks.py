"""Webhooks and exactly-once fulfilment: signed deliveries from the sandbox to the running
store, duplicates, out-of-order events, races with the status poll, forged signatures."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order, OrderTransition, PointsEntry, StripeEvent, User
from storefront.services import fulfilment, purchase
from storefront.services import webhooks as webhooks_service

from .conftest import browser_confirm, found, sign_payload
from .factories import stripe_event
from .queue_worker import settle

#: every test here fails if the app calls Stripe inside a database transaction that has written,
#: or inside any transaction while handling a webhook (tests/conftest.py: TransactionGuard)


def flush(sandbox):
    """Every webhook delivered (stored and acknowledged), and processed by the queue's worker."""
    assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 15})["idle"]
    settle()


def order_row(app) -> Order:
    with app.app_context():
        order = found(db.session.scalar(select(Order).order_by(Order.id.desc())), "order")
        db.session.expunge(order)
        return order


def counts(app) -> dict:
    with app.app_context():
        return {
            "balance": db.session.scalar(select(User.points_balance).order_by(User.id.desc())),
            "ledger": db.session.scalar(select(func.count(PointsEntry.id))),
            "paid_transitions": db.session.scalar(
                select(func.count(OrderTransition.id)).where(OrderTransition.to_status == "paid")
            ),
            "events": db.session.scalar(select(func.count(StripeEvent.id))),
        }


def bought(buyer, app, lookup_key="points_medium") -> Order:
    assert buyer.post(f"/buy/{lookup_key}").status_code == 303
    return order_row(app)


def sandbox_event(sandbox, event_type: str) -> dict:
    events = sandbox.stripe.v1.events.list(params={"type": event_type, "limit": 1}).data
    assert events, f"no {event_type} event at the sandbox"
    return events[0].to_dict()


def post_event(client, event: dict, secret: str, timestamp: int | None = None):
    payload = json.dumps(event)
    return client.post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(payload, secret, timestamp)},
    )


# --- the happy path over real HTTP ------------------------------------------------------------


def test_signed_webhook_alone_fulfils_the_order(app, buyer, sandbox, webhooks):
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    order = order_row(app)
    assert order.status == "paid" and order.stripe_charge_id is not None and order.stripe_charge_id.startswith("ch_")
    assert counts(app)["balance"] == 550 and counts(app)["ledger"] == 1
    with app.app_context():
        sources = db.session.scalars(select(OrderTransition.source).where(OrderTransition.to_status == "paid")).all()
        stored = db.session.scalars(select(StripeEvent)).all()
    assert sources[0].startswith("event:evt_")
    assert {e.type for e in stored} >= {"payment_intent.succeeded", "charge.succeeded"}
    assert all(e.processed_at is not None and e.error is None for e in stored)
    deliveries = sandbox.control("GET", "/_sandbox/deliveries")["deliveries"]
    assert deliveries and all(d["last_status"] == 200 for d in deliveries)


def test_checkout_completed_webhook_fulfils(app, buyer, sandbox, webhooks):
    buyer.post("/buy/points_large", data={"method": "checkout"})
    order = order_row(app)
    sandbox.control(
        "POST", f"/_sandbox/checkout/{order.stripe_checkout_session_id}/pay", {"payment_method": "pm_card_visa"}
    )
    flush(sandbox)
    order = order_row(app)
    assert (
        order.status == "paid"
        and order.stripe_payment_intent_id is not None
        and order.stripe_payment_intent_id.startswith("pi_")
    )
    assert counts(app)["balance"] == 1400


# --- duplicates, order, races -------------------------------------------------------------------


def test_the_same_event_three_times_credits_once(app, buyer, client, sandbox, webhooks):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"duplicate": True})
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)  # every event arrived twice
    event = sandbox_event(sandbox, "payment_intent.succeeded")
    third = post_event(client, event, webhooks)  # and once more, late
    assert third.status_code == 200 and third.get_json()["duplicate"] is True
    with app.app_context():
        stored = db.session.scalar(select(func.count(StripeEvent.id)).where(StripeEvent.stripe_id == event["id"]))
    assert stored == 1
    assert counts(app)["balance"] == 550 and counts(app)["ledger"] == 1
    assert counts(app)["paid_transitions"] == 1


def test_events_out_of_order_end_in_the_right_state(app, buyer, client, sandbox, webhooks):
    """A decline, then 3-D Secure, then success -- each delivered and processed, newest first.

    One at a time: the queue's two worker threads may process events that arrive together in
    either order (as Stripe may deliver them), which ends in the same state but not always the
    same history; here the older events are processed after the newer one, and change nothing."""
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_chargeDeclined")
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_authenticationRequired")
    sandbox.control("POST", f"/_sandbox/authenticate/{order.stripe_payment_intent_id}", {"outcome": "complete"})
    listed = sandbox.stripe.v1.events.list(params={"limit": 100}).data  # newest first, as Stripe lists
    newest_first = [json.loads(json.dumps(e.to_dict(), default=str)) for e in listed]  # (Decimal amounts)
    assert {"payment_intent.payment_failed", "payment_intent.requires_action", "payment_intent.succeeded"} <= {
        e["type"] for e in newest_first
    }
    for event in newest_first:
        assert post_event(client, event, webhooks).status_code == 200
        settle()
    order = order_row(app)
    assert order.status == "paid"
    assert counts(app)["balance"] == 550 and counts(app)["paid_transitions"] == 1
    with app.app_context():
        history = db.session.scalars(
            select(OrderTransition.to_status).where(OrderTransition.order_id == order.id).order_by(OrderTransition.id)
        ).all()
    assert history == ["pending", "paid"]  # the older failure and action arrived too late


def test_an_event_older_than_the_state_we_hold_changes_nothing(app, buyer, sandbox):
    order = bought(buyer, app)
    pi = sandbox.stripe.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()
    with app.app_context():
        fulfilment.apply_payment_intent({**pi, "status": "processing"}, source="event:evt_new", event_created=2000)
        db.session.commit()
        fulfilment.apply_payment_intent(
            {
                **pi,
                "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "message": "Declined"},
            },
            source="event:evt_old",
            event_created=1000,
        )
        db.session.commit()
    assert order_row(app).status == "processing"


def test_webhook_and_status_poll_racing(app, client, auth, catalog, sandbox, webhooks, monkeypatch):
    """Four deliveries of the event and four polls that each sync, all at once: one credit."""
    auth.signup()
    order = bought(client, app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})  # we deliver it ourselves
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox_event(sandbox, "payment_intent.succeeded")
    monkeypatch.setattr(purchase, "SYNC_INTERVAL", purchase.SYNC_INTERVAL * 0)
    cookie = client.get_cookie("session").value
    barrier = threading.Barrier(8)
    answers = []

    def deliver():
        with app.test_client() as c:
            barrier.wait()
            answers.append(post_event(c, event, webhooks).status_code)

    def poll():
        with app.test_client() as c:
            c.set_cookie("session", cookie)
            barrier.wait()
            answers.append(c.get(f"/orders/{order.public_id}/status").status_code)

    threads = [threading.Thread(target=deliver) for _ in range(4)] + [threading.Thread(target=poll) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    settle()
    assert answers == [200] * 8
    assert order_row(app).status == "paid"
    assert counts(app)["balance"] == 550
    assert counts(app)["ledger"] == 1 and counts(app)["paid_transitions"] == 1


# --- signatures ---------------------------------------------------------------------------------


def test_forged_stale_and_missing_signatures_are_refused(app, buyer, client, sandbox, webhooks):
    order = bought(buyer, app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox_event(sandbox, "payment_intent.succeeded")
    assert post_event(client, event, "whsec_forged").status_code == 400
    assert post_event(client, event, webhooks, timestamp=int(time.time()) - 3600).status_code == 400
    unsigned = client.post("/api/stripe/webhook", data=json.dumps(event), content_type="application/json")
    assert unsigned.status_code == 400
    assert unsigned.get_json()["error"]["code"] == "invalid_signature"
    payload = json.dumps(event)
    tampered = payload.replace('"amount": 500', '"amount": 1')
    response = client.post(
        "/api/stripe/webhook",
        data=tampered,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(payload, webhooks)},
    )
    assert response.status_code == 400
    assert counts(app)["events"] == 0 and order_row(app).status == "pending"


def test_without_a_signing_secret_every_webhook_is_refused(app, client, sandbox):
    app.config["STRIPE_WEBHOOK_SECRET"] = None
    response = client.post(
        "/api/stripe/webhook", data="{}", content_type="application/json", headers={"Stripe-Signature": "t=1,v1=abc"}
    )
    assert response.status_code == 400


# --- failures and unknown objects -----------------------------------------------------------------


def test_event_for_an_unknown_object_is_stored_and_acknowledged(app, client, sandbox, webhooks):
    event = stripe_event(
        "evt_unknown_1",
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded", "metadata": {}},
        api_version="2026-10-28.endive",
    )
    response = post_event(client, event, webhooks)
    assert response.status_code == 200
    settle()
    with app.app_context():
        stored = found(
            db.session.scalar(select(StripeEvent).where(StripeEvent.stripe_id == "evt_unknown_1")), "evt_unknown_1"
        )
        assert stored.processed_at is not None


def test_a_failing_handler_is_recorded_and_the_stores_retry_succeeds(
    app, buyer, client, sandbox, webhooks, monkeypatch
):
    """The delivery is acknowledged whatever processing does; a failure is recorded with its
    error and retried by the store (the sweeper, after the backoff), not by Stripe."""
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SECONDS", 0.0)  # the retry is due at once
    order = bought(buyer, app)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox_event(sandbox, "payment_intent.succeeded")
    real = fulfilment.apply_payment_intent

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(fulfilment, "apply_payment_intent", broken)
    assert post_event(client, event, webhooks).status_code == 200
    settle()
    with app.app_context():
        stored = found(db.session.scalar(select(StripeEvent)), "event row")
        assert stored.processed_at is None and stored.error is not None and "database hiccup" in stored.error
        assert stored.attempts == 1 and stored.next_attempt_at is not None
    assert order_row(app).status == "pending" and counts(app)["ledger"] == 0
    monkeypatch.setattr(fulfilment, "apply_payment_intent", real)
    with app.app_context():
        assert webhooks_service.process_due() == "1 processed, 0 failed"
    assert order_row(app).status == "paid" and counts(app)["balance"] == 550
    again = post_event(client, event, webhooks)  # Stripe's late redelivery
    assert again.status_code == 200 and again.get_json()["duplicate"] is True


def test_stripe_never_retries_a_delivery_the_store_failed_to_process(app, buyer, sandbox, webhooks, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SECONDS", 0.0)
    order = bought(buyer, app)
    calls = {"n": 0}
    real = fulfilment.apply_payment_intent

    def flaky(pi, **kwargs):
        if pi.get("status") == "succeeded" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("first attempt fails")
        return real(pi, **kwargs)

    monkeypatch.setattr(fulfilment, "apply_payment_intent", flaky)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    assert order_row(app).status == "pending" and calls["n"] == 1
    with app.app_context():
        webhooks_service.process_due()
    assert order_row(app).status == "paid" and counts(app)["balance"] == 550
    deliveries = sandbox.control("GET", "/_sandbox/deliveries")["deliveries"]
    assert deliveries and all(d["attempts"] == 1 and d["last_status"] == 200 for d in deliveries)


# --- refunds and disputes ---------------------------------------------------------------------------


def test_partial_then_full_refund_claws_points_back_in_proportion(app, buyer, sandbox, webhooks):
    order = bought(buyer, app)  # $5.00 for 550 points
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    sandbox.stripe.v1.refunds.create(params={"payment_intent": order.stripe_payment_intent_id, "amount": 200})
    flush(sandbox)
    assert order_row(app).status == "partially_refunded"
    assert counts(app)["balance"] == 550 - 220
    sandbox.stripe.v1.refunds.create(params={"payment_intent": order.stripe_payment_intent_id})
    flush(sandbox)
    order = order_row(app)
    assert order.status == "refunded" and order.amount_refunded == 500
    assert counts(app)["balance"] == 0


def test_a_dispute_marks_the_order_and_freezes_its_points(app, buyer, sandbox, webhooks):
    order = bought(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id, "pm_card_createDispute")
    flush(sandbox)
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 5})
    flush(sandbox)
    assert order_row(app).status == "disputed"
    assert counts(app)["balance"] == 0


# --- malformed, future-dated and oversized deliveries (400 / 413, nothing stored) -----------------


def _stored_nothing(app) -> bool:
    return counts(app)["events"] == 0


def _post_raw(client, body: bytes, secret: str, timestamp: int | None = None):
    return client.post(
        "/api/stripe/webhook",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, secret, timestamp)},
    )


def _good_event(**changes) -> dict:
    event = stripe_event(
        "evt_shape_1",
        "payment_intent.succeeded",
        {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded", "metadata": {}},
    )
    event.update(changes)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()
MALFORMED = {
    "missing id": json.dumps(_good_event(id=_DROP)).encode(),
    "id not a string": json.dumps(_good_event(id=12)).encode(),
    "created not a number": json.dumps(_good_event(created="abc")).encode(),
    "created too large": json.dumps(_good_event(created=10**20)).encode(),
    "type missing": json.dumps(_good_event(type=_DROP)).encode(),
    "data null": json.dumps(_good_event(data=None)).encode(),
    "data.object a list": json.dumps(_good_event(data={"object": [1]})).encode(),
    "data.object missing": json.dumps(_good_event(data={})).encode(),
    "utf-16 body": json.dumps(_good_event()).encode("utf-16"),
    "utf-16 body without BOM": json.dumps(_good_event()).encode("utf-16-le"),
    "invalid utf-8": json.dumps(_good_event()).encode()[:-2] + b"\xff\xfe}",
    "not json": b"{not json",
    "deeply nested": b"[" * 50_000 + b"]" * 50_000,
    "not an event": json.dumps({**_good_event(), "object": "charge"}).encode(),
    # each of these reached a varchar column and answered 500 on PostgreSQL (found by the fuzz suite)
    "a 5,000-digit charge id": json.dumps(
        _good_event(data={"object": {"id": "pi_not_ours", "object": "payment_intent", "latest_charge": "9" * 5000}})
    ).encode(),
    "a NUL in a metadata value": json.dumps(
        _good_event(data={"object": {"id": "pi_not_ours", "object": "payment_intent", "metadata": {"order": "a\x00b"}}})
    ).encode(),
    "a 6,000-character description": json.dumps(
        _good_event(data={"object": {"id": "pi_not_ours", "object": "payment_intent", "description": "x" * 6000}})
    ).encode(),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_signed_but_malformed_event_answers_400_and_stores_nothing(app, client, sandbox, webhooks, body):
    response = _post_raw(client, body, webhooks)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_payload" and error["message"]
    assert _stored_nothing(app)


def test_the_well_formed_event_those_were_made_from_is_accepted(app, client, sandbox, webhooks):
    response = _post_raw(client, json.dumps(_good_event()).encode(), webhooks)
    assert response.status_code == 200 and counts(app)["events"] == 1


def test_a_timestamp_in_the_future_is_refused_like_a_stale_one(app, client, sandbox, webhooks):
    body = json.dumps(_good_event()).encode()
    for offset in (86_400, 301, -3600):  # a day ahead, just past the tolerance, an hour old
        response = _post_raw(client, body, webhooks, timestamp=int(time.time()) + offset)
        assert response.status_code == 400, offset
        assert response.get_json()["error"]["code"] == "invalid_signature"
    assert _stored_nothing(app)
    near = _post_raw(client, body, webhooks, timestamp=int(time.time()) + 60)  # clock skew
    assert near.status_code == 200


class _Body(io.RawIOBase):
    """A request body of ``size`` bytes produced on demand, counting what the app reads."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body by seeking
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = [offset, self.position + offset, self.size + offset][whence]
        return self.position

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.position)
        buffer[:n] = b" " * n
        self.position += n
        self.read_bytes += n
        return n


def test_a_50_mb_webhook_is_refused_before_it_is_read(app, client, sandbox, webhooks):
    body = _Body(50 * 1024 * 1024)
    response = client.post(
        "/api/stripe/webhook",
        input_stream=body,
        environ_overrides={"CONTENT_LENGTH": str(body.size)},
        headers={"Stripe-Signature": "t=1,v1=abc", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert body.read_bytes == 0 and _stored_nothing(app)


def test_a_body_without_content_length_is_cut_off_at_the_limit(app, client, sandbox, webhooks):
    from storefront.services.webhooks import MAX_BYTES

    body = _Body(50 * 1024 * 1024)
    response = client.post(
        "/api/stripe/webhook",
        input_stream=body,
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
        headers={"Stripe-Signature": "t=1,v1=abc", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert body.read_bytes <= MAX_BYTES + 1 and _stored_nothing(app)


def test_a_body_just_over_the_limit_is_refused_and_one_under_is_read(app, client, sandbox, webhooks):
    from storefront.services.webhooks import MAX_BYTES

    event = json.dumps(_good_event()).encode()
    over = event + b" " * (MAX_BYTES + 1 - len(event))
    assert _post_raw(client, over, webhooks).status_code == 413
    under = event + b" " * (MAX_BYTES - len(event))
    assert _post_raw(client, under, webhooks).status_code == 200


def test_a_repeat_of_a_processed_event_does_not_ask_stripe(app, client, sandbox, webhooks, tx_guard):
    event = _good_event(
        type="customer.subscription.updated",
        data={
            "object": {"id": "sub_not_ours", "object": "subscription", "customer": "cus_not_ours", "status": "active"}
        },
    )
    body = json.dumps(event).encode()
    calls = len(tx_guard.calls)
    first = _post_raw(client, body, webhooks)  # re-fetched (unknown at Stripe: the event's copy)
    assert first.status_code == 200
    settle()
    assert len(tx_guard.calls) == calls + 1
    again = _post_raw(client, body, webhooks)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert len(tx_guard.calls) == calls + 1 and counts(app)["events"] == 1
