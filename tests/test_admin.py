"""The admin area against the running store and the sandbox (no Stripe mocks): access control
over every admin route, refunds (partial, full, double-submitted, over the limit), disputes,
replaying events, reconciliation after a dropped webhook, purchases (filters, search,
pagination, totals, CSV), buyers and points adjustments, the dashboard."""

from __future__ import annotations

import csv
import io
import re
import threading

import pytest
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import Order, OrderTransition, PointsEntry, Refund, StripeEvent, User
from storefront.services import admin_reports
from storefront.services import refunds as refunds_service

from .conftest import ADMIN_EMAIL, browser_confirm, csrf_token_from, found
from .factories import make_stripe_event
from .queue_worker import settle

NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')


# --- helpers --------------------------------------------------------------------------------------


def flush(sandbox):
    """Every webhook delivered, and processed by the queue's worker."""
    assert sandbox.control("POST", "/_sandbox/webhooks/flush", {"timeout": 15})["idle"]
    settle()


def last_order(app) -> Order:
    with app.app_context():
        order = found(db.session.scalar(select(Order).order_by(Order.id.desc())), "order")
        db.session.expunge(order)
        return order


def balance(app, email="buyer@example.com") -> int:
    with app.app_context():
        return found(db.session.scalar(select(User.points_balance).where(User.email == email)), f"user {email}")


def snapshot(app) -> dict:
    """Everything a replay or a second reconcile must leave alone."""
    with app.app_context():
        return {
            "orders": db.session.execute(
                select(Order.public_id, Order.status, Order.amount_refunded, Order.paid_at).order_by(Order.id)
            ).all(),
            "ledger": db.session.execute(select(PointsEntry.key, PointsEntry.amount).order_by(PointsEntry.id)).all(),
            "balances": db.session.execute(select(User.email, User.points_balance).order_by(User.id)).all(),
            "transitions": db.session.scalar(select(func.count(OrderTransition.id))),
        }


def buy(buyer, app, lookup_key="points_medium", **form) -> Order:
    assert buyer.post(f"/buy/{lookup_key}", data=form).status_code == 303
    return last_order(app)


def paid_order(app, buyer, sandbox, lookup_key="points_medium", card="pm_card_visa") -> Order:
    order = buy(buyer, app, lookup_key)
    browser_confirm(sandbox, order.stripe_payment_intent_id, card)
    flush(sandbox)
    order = last_order(app)
    assert order.status == "paid"
    return order


def nonce_from(html: str) -> str:
    match = NONCE_RE.search(html)
    assert match, "no nonce in the form"
    return match.group(1)


CONFIRMATION_RE = re.compile(r'name="confirmation" value="([^"]+)"')


def review(admin, order: Order, amount: str, reason="requested_by_customer", **form):
    """Step 1 of a refund: the confirmation page (or a redirect with the refusal)."""
    return admin.post(f"/admin/orders/{order.public_id}/refund", data={"amount": amount, "reason": reason, **form})


def confirmation_from(html: str) -> str:
    match = CONFIRMATION_RE.search(html)
    assert match, "no confirmation token on the page"
    return match.group(1)


def confirm(admin, order: Order, token: str, **form):
    return admin.post(f"/admin/orders/{order.public_id}/refund/confirm", data={"confirmation": token, **form})


def refund(admin, order: Order, amount: str, reason="requested_by_customer"):
    """Review, then confirm what the page showed."""
    response = review(admin, order, amount, reason)
    if response.status_code != 200:
        return response
    return confirm(admin, order, confirmation_from(response.get_data(as_text=True)))


# --- access: every admin route, automatically -----------------------------------------------------


def _admin_routes():
    from storefront import create_app

    from .conftest import make_config

    app = create_app(make_config("sqlite://", "http://127.0.0.1:9"))
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        values = {arg: (1 if "int" in type(rule._converters[arg]).__name__.lower() else "x") for arg in rule.arguments}
        path = rule.rule
        for arg, value in values.items():
            path = re.sub(r"<(?:[^:>]+:)?" + arg + ">", str(value), path)
        for method in sorted(found(rule.methods, f"methods of {rule.rule}") - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


ADMIN_ROUTES = _admin_routes()


def test_the_admin_routes_are_all_collected():
    paths = {p for _, p in ADMIN_ROUTES}
    assert {
        "/admin/",
        "/admin/purchases",
        "/admin/purchases.csv",
        "/admin/orders/x",
        "/admin/orders/x/refund",
        "/admin/events/1/replay",
        "/admin/reconcile",
        "/admin/buyers/x/points",
    } <= paths
    assert ("POST", "/admin/reconcile") in ADMIN_ROUTES


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_a_buyer_gets_403_on_every_admin_route(app, buyer, method, path):
    response = buyer.open(path, method=method, data={"amount": "1", "nonce": "n", "days": "3"})
    assert response.status_code == 403


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_anonymous_visitors_are_sent_to_log_in(app, client, method, path):
    response = client.open(path, method=method)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", sorted({p for m, p in ADMIN_ROUTES if m == "POST"}))
def test_every_admin_post_needs_the_csrf_token(app, admin, path):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = admin.post(path, data={"amount": "1", "nonce": "n", "days": "3"})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400


def test_admin_forms_carry_the_csrf_token(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
        page = review(admin, order, "1.00", "duplicate", csrf_token=csrf_token_from(page)).get_data(as_text=True)
        response = confirm(admin, order, confirmation_from(page), csrf_token=csrf_token_from(page))
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 302
    assert len(sandbox.stripe.v1.refunds.list(params={"payment_intent": order.stripe_payment_intent_id}).data) == 1
    flush(sandbox)  # charge.refunded reaches the store before the tables are emptied


def test_the_admin_link_shows_for_admins_only(app, admin, buyer):
    assert 'href="/admin/"' in admin.get("/").get_data(as_text=True)
    assert 'href="/admin/"' not in buyer.get("/").get_data(as_text=True)


def test_every_admin_page_renders_for_an_admin(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    with app.app_context():
        event_id = db.session.scalar(select(StripeEvent.id))
        buyer_id = db.session.scalar(select(User.public_id).where(User.email == "buyer@example.com"))
    for path in (
        "/admin/",
        "/admin/purchases",
        "/admin/purchases.csv",
        f"/admin/orders/{order.public_id}",
        "/admin/buyers",
        f"/admin/buyers/{buyer_id}",
        "/admin/events",
        f"/admin/events/{event_id}",
        "/admin/reconcile",
        "/admin/events?problem=1&type=charge.refunded",
        "/admin/buyers?q=buy",
    ):
        response = admin.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store"
        response.get_data()  # a streamed answer (the CSV) holds its request open until read
        response.close()
    assert admin.get("/admin/orders/ord_nope").status_code == 404
    assert admin.get("/admin/events/999999").status_code == 404


# --- refunds ------------------------------------------------------------------------------------


def test_partial_then_full_refund_from_the_order_page(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)  # $5.00, 550 points
    assert balance(app) == 550
    response = refund(admin, order, "2.00")
    assert response.status_code == 302
    flush(sandbox)
    order = last_order(app)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 200)
    assert balance(app) == 550 - 220  # 2/5 of the points, exactly
    page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    assert "Up to $3.00" in page
    refund(admin, order, "3")
    flush(sandbox)
    order = last_order(app)
    assert (order.status, order.amount_refunded) == ("refunded", 500)
    assert balance(app) == 0
    with app.app_context():
        claws = db.session.scalars(
            select(PointsEntry.amount)
            .where(PointsEntry.order_id == order.id, PointsEntry.reason == "refund")
            .order_by(PointsEntry.id)
        ).all()
        rows = db.session.scalars(select(Refund).order_by(Refund.id)).all()
        assert [(r.amount, r.status, r.reason) for r in rows] == [
            (200, "succeeded", "requested_by_customer"),
            (300, "succeeded", "requested_by_customer"),
        ]
        assert all(r.created_by.email == ADMIN_EMAIL for r in rows)
    assert claws == [-220, -330]
    at_stripe = sandbox.stripe.v1.refunds.list(params={"payment_intent": order.stripe_payment_intent_id}).data
    assert sorted(r.amount for r in at_stripe) == [200, 300]
    # the buyer sees why points went away
    history = buyer.get("/account/points").get_data(as_text=True)
    assert "$2.00 of $5.00 refunded" in history and "$5.00 of $5.00 refunded" in history
    assert "-220" in history and "-330" in history
    # the timeline names the events behind each change, linked to the stored event
    page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    assert "Fully refunded." in page
    assert re.search(r'href="/admin/events/\d+"><code>event:evt_', page)


def test_a_double_submitted_refund_refunds_once(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    token = confirmation_from(review(admin, order, "1.50").get_data(as_text=True))
    first = confirm(admin, order, token)
    second = confirm(admin, order, token)  # the double click
    assert first.status_code == second.status_code == 302
    # and two more at the very same moment
    cookie = admin.get_cookie("session").value
    barrier = threading.Barrier(2)
    codes = []

    def click():
        with app.test_client() as c:
            c.set_cookie("session", cookie)
            barrier.wait()
            codes.append(confirm(c, order, token).status_code)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert codes == [302, 302]
    flush(sandbox)
    at_stripe = sandbox.stripe.v1.refunds.list(params={"payment_intent": order.stripe_payment_intent_id}).data
    assert [r.amount for r in at_stripe] == [150]
    order = last_order(app)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 150)
    with app.app_context():
        assert db.session.scalar(select(func.count(Refund.id))) == 1
    assert balance(app) == 550 - 165


def test_a_refund_cannot_exceed_what_is_left_including_refunds_in_flight(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})  # Stripe confirms late
    refund(admin, order, "4.00")
    with app.app_context():
        assert refunds_service.in_flight(found(db.session.get(Order, order.id), "order")) == 400
    response = refund(admin, order, "1.01")
    assert response.status_code == 302
    follow = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "At most $1.00 can be refunded" in follow
    assert refund(admin, order, "5.00").status_code == 302
    at_stripe = sandbox.stripe.v1.refunds.list(params={"payment_intent": order.stripe_payment_intent_id}).data
    assert [r.amount for r in at_stripe] == [400]
    assert last_order(app).status == "paid"  # nothing changes until Stripe confirms
    sandbox.control("DELETE", "/_sandbox/webhooks/faults")
    sandbox.control("POST", "/_sandbox/webhooks/release", {})
    flush(sandbox)
    order = last_order(app)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 400)
    assert balance(app) == 550 - 440


def test_sync_with_stripe_applies_a_refund_whose_webhook_was_lost(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"drop": 100})
    refund(admin, order, "5")
    flush(sandbox)
    assert last_order(app).status == "paid"
    admin.post(f"/admin/orders/{order.public_id}/sync")
    order = last_order(app)
    assert (order.status, order.amount_refunded) == ("refunded", 500)
    assert balance(app) == 0


@pytest.mark.parametrize(
    "text,currency,expected",
    [
        ("12.50", "usd", 1250),
        ("12.5", "usd", 1250),
        ("$1,000", "usd", 100000),
        ("3", "usd", 300),
        ("0.01", "usd", 1),
        ("500", "jpy", 500),
        ("1,234.50", "usd", 123450),
    ],
)
def test_refund_amounts_are_parsed_to_minor_units(text, currency, expected):
    assert refunds_service.parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    "text,currency",
    [
        ("", "usd"),
        ("abc", "usd"),
        ("-1", "usd"),
        ("0", "usd"),
        ("1.001", "usd"),
        ("1.5", "jpy"),
        ("NaN", "usd"),
        ("Infinity", "usd"),
        ("1e3", "jpy"),
        ("1,50", "usd"),
        ("1_000", "usd"),
        ("١", "usd"),
        ("9" * 5000, "usd"),
        ("€5", "usd"),
    ],
)
def test_bad_refund_amounts_are_refused(text, currency):
    with pytest.raises(refunds_service.RefundError):
        refunds_service.parse_amount(text, currency)


def test_an_unpaid_order_cannot_be_refunded(app, admin, buyer, sandbox):
    order = buy(buyer, app)
    page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    assert "cannot be refunded" in page and 'name="amount"' not in page
    response = refund(admin, order, "1")
    assert "cannot be refunded" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []


def test_a_refund_is_confirmed_with_its_exact_amount_and_card_before_it_leaves(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)  # $5.00 with pm_card_visa
    page = review(admin, order, "1.50")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Refund $1.50 of $5.00 to Visa ending 4242?" in html
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []  # nothing sent yet
    with app.app_context():
        assert db.session.scalar(select(func.count(Refund.id))) == 0
    # the confirmed amount is the signed one: a re-typed form field changes nothing
    response = confirm(admin, order, confirmation_from(html), amount="5.00")
    assert response.status_code == 302
    at_stripe = sandbox.stripe.v1.refunds.list(params={"payment_intent": order.stripe_payment_intent_id}).data
    assert [r.amount for r in at_stripe] == [150]
    flush(sandbox)


def test_a_comma_amount_is_refused_not_read_as_a_hundred_times_more(app, admin, buyer, sandbox, webhooks):
    """Issue 10, finding 2: "1,50" refunded $150.00."""
    order = paid_order(app, buyer, sandbox, "points_large")
    response = review(admin, order, "1,50")
    assert response.status_code == 302
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "for certain" in page
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []


@pytest.mark.parametrize("token", ["", "bad-١", "x" * 5000, "forged.token.value"])
def test_a_bad_confirmation_refunds_nothing_and_leaves_no_row(app, admin, buyer, sandbox, webhooks, token):
    order = paid_order(app, buyer, sandbox)
    response = confirm(admin, order, token)
    assert response.status_code == 302
    assert "start the refund again" in admin.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Refund.id))) == 0
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []


def test_a_confirmation_is_for_its_order_and_admin_and_expires(app, admin, buyer, sandbox, webhooks, monkeypatch):
    first = paid_order(app, buyer, sandbox)
    second = paid_order(app, buyer, sandbox)
    token = confirmation_from(review(admin, first, "1.00").get_data(as_text=True))
    assert confirm(admin, second, token).status_code == 302  # another order: refused
    monkeypatch.setattr(refunds_service, "CONFIRM_MAX_AGE", -1)
    response = confirm(admin, first, token)
    assert "expired" in admin.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Refund.id))) == 0
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []


@pytest.mark.parametrize("nonce", ["bad-١", "short", "a" * 65, "has space 1234567890", "", None])
def test_a_refund_nonce_outside_the_idempotency_key_alphabet_is_refused(app, admin, buyer, webhooks, sandbox, nonce):
    """Issue 10, finding 14: ``bad-١`` went into the Idempotency-Key and left a refund stuck."""
    order = paid_order(app, buyer, sandbox)
    with app.app_context():
        boss = found(db.session.scalar(select(User).where(User.email == ADMIN_EMAIL)), "admin")
        with pytest.raises(refunds_service.RefundError):
            refunds_service.request_refund(order.id, amount=100, reason=None, nonce=nonce, admin=boss)
        assert db.session.scalar(select(func.count(Refund.id))) == 0
    assert sandbox.stripe.v1.refunds.list(params={"limit": 10}).data == []


# --- disputes -------------------------------------------------------------------------------------


def test_a_dispute_freezes_points_and_shows_on_the_dashboard(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox, card="pm_card_createDispute")
    sandbox.control("POST", "/_sandbox/clock/advance", {"seconds": 5})
    flush(sandbox)
    order = last_order(app)
    assert order.status == "disputed" and balance(app) == 0
    with app.app_context():
        frozen = db.session.scalar(
            select(PointsEntry.amount).where(PointsEntry.order_id == order.id, PointsEntry.reason == "dispute")
        )
    assert frozen == -550
    dashboard = admin.get("/admin/").get_data(as_text=True)
    assert order.public_id in dashboard
    assert re.search(r"<dt>Open disputes</dt><dd>1</dd>", dashboard)
    page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    assert "This payment is disputed" in page and 'name="amount"' not in page


# --- Stripe events and replay -----------------------------------------------------------------------


def test_replaying_every_event_changes_nothing(app, admin, buyer, sandbox, webhooks):
    order = paid_order(app, buyer, sandbox)
    refund(admin, order, "2")
    flush(sandbox)
    before = snapshot(app)
    assert before["orders"][0][1] == "partially_refunded"
    with app.app_context():
        events = db.session.execute(select(StripeEvent.id, StripeEvent.attempts)).all()
    assert len(events) >= 3  # payment_intent.succeeded, charge.succeeded, charge.refunded
    for event_id, _ in events:
        response = admin.post(f"/admin/events/{event_id}/replay")
        assert response.status_code == 302
        assert "the handler ran again" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert snapshot(app) == before
    with app.app_context():
        after = dict(db.session.execute(select(StripeEvent.id, StripeEvent.attempts)).all())
    assert all(after[event_id] == attempts + 1 for event_id, attempts in events)


def test_a_replay_retries_an_event_that_failed(app, admin, buyer, sandbox, webhooks, monkeypatch):
    from storefront.services import fulfilment

    order = buy(buyer, app)
    real = fulfilment.apply_payment_intent

    def broken(pi, **kwargs):
        if pi.get("status") == "succeeded":
            raise RuntimeError("database hiccup")
        return real(pi, **kwargs)

    monkeypatch.setattr(fulfilment, "apply_payment_intent", broken)
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"hold": True})
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    event = sandbox.stripe.v1.events.list(params={"type": "payment_intent.succeeded"}).data[0]
    from .test_webhooks import post_event

    assert post_event(admin, event.to_dict(), webhooks).status_code == 200  # stored; processing fails
    settle()
    with app.app_context():
        row = found(db.session.scalar(select(StripeEvent).where(StripeEvent.stripe_id == event.id)), "event row")
        row_id = row.id
        assert row.processed_at is None and row.error is not None and "hiccup" in row.error
    listing = admin.get("/admin/events?problem=1").get_data(as_text=True)
    assert event.id in listing
    page = admin.get(f"/admin/events/{row_id}").get_data(as_text=True)
    assert "&#34;payment_intent.succeeded&#34;" in page or "&quot;payment_intent.succeeded&quot;" in page
    monkeypatch.setattr(fulfilment, "apply_payment_intent", real)
    admin.post(f"/admin/events/{row_id}/replay")
    order = last_order(app)
    assert order.status == "paid" and balance(app) == 550
    with app.app_context():
        source = db.session.scalar(select(OrderTransition.source).where(OrderTransition.to_status == "paid"))
    assert source == f"replay:{event.id}"


def test_the_payload_is_escaped(app, admin, sandbox):
    with app.app_context():
        row = make_stripe_event(payload={"id": "evt_x", "note": "<script>alert(1)</script>"})
        db.session.commit()
        row_id = row.id
    page = admin.get(f"/admin/events/{row_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_replay_event_command(app, runner, buyer, sandbox, webhooks):
    paid_order(app, buyer, sandbox)
    before = snapshot(app)
    with app.app_context():
        stripe_id = db.session.scalar(
            select(StripeEvent.stripe_id).where(StripeEvent.type == "payment_intent.succeeded")
        )
    result = runner.invoke(args=["replay-event", stripe_id])
    assert result.exit_code == 0, result.output
    assert f"Replayed {stripe_id}" in result.output
    assert snapshot(app) == before
    assert runner.invoke(args=["replay-event", "evt_nope"]).exit_code != 0


# --- reconciliation -------------------------------------------------------------------------------


def test_reconcile_repairs_a_dropped_webhook_and_then_changes_nothing(app, admin, buyer, sandbox, webhooks):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"drop": 100})
    order = buy(buyer, app)
    browser_confirm(sandbox, order.stripe_payment_intent_id)
    flush(sandbox)
    assert last_order(app).status == "pending" and balance(app) == 0
    response = admin.post("/admin/reconcile", data={"days": "3"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert order.public_id in page and "1 change(s)" in page
    order = last_order(app)
    assert order.status == "paid" and balance(app) == 550
    with app.app_context():
        assert db.session.scalar(select(func.count(PointsEntry.id))) == 1
        source = db.session.scalar(select(OrderTransition.source).where(OrderTransition.to_status == "paid"))
    assert source == "reconcile"
    before = snapshot(app)
    again = admin.post("/admin/reconcile", data={"days": "3"}).get_data(as_text=True)
    assert "0 change(s)" in again and "Nothing to repair" in again
    assert snapshot(app) == before


def test_reconcile_command_repairs_checkout_and_refund(app, runner, admin, buyer, sandbox, webhooks):
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"drop": 1000})
    buyer.post("/buy/points_large", data={"method": "checkout"})
    order = last_order(app)
    sandbox.control(
        "POST", f"/_sandbox/checkout/{order.stripe_checkout_session_id}/pay", {"payment_method": "pm_card_visa"}
    )
    flush(sandbox)
    assert last_order(app).status == "pending"
    result = runner.invoke(args=["reconcile", "--days", "3"])
    assert result.exit_code == 0, result.output
    assert f"{order.public_id}: pending -> paid" in result.output
    assert balance(app) == 1400
    order = last_order(app)
    sandbox.stripe.v1.refunds.create(params={"payment_intent": order.stripe_payment_intent_id, "amount": 600})
    result = runner.invoke(args=["reconcile", "--days", "3"])
    assert f"{order.public_id}: paid -> partially_refunded" in result.output
    assert balance(app) == 700
    result = runner.invoke(args=["reconcile", "--days", "3"])
    assert "0 change(s)" in result.output


def test_reconcile_refuses_silly_ranges(app, admin, runner):
    assert admin.post("/admin/reconcile", data={"days": "500"}).status_code == 400
    assert runner.invoke(args=["reconcile", "--days", "0"]).exit_code != 0


# --- purchases: filters, search, pagination, totals, CSV ---------------------------------------------


@pytest.fixture
def orders_mix(app, buyer, sandbox, webhooks, client, auth):
    """Five orders: two paid (medium, large), one failed, one pending (small), one checkout."""
    paid = [paid_order(app, buyer, sandbox, "points_medium"), paid_order(app, buyer, sandbox, "points_large")]
    failed = buy(buyer, app, "points_small")
    browser_confirm(sandbox, failed.stripe_payment_intent_id, "pm_card_chargeDeclined")
    flush(sandbox)
    pending = buy(buyer, app, "points_small")
    buyer.post("/buy/points_medium", data={"method": "checkout"})
    checkout = last_order(app)
    return {"paid": paid, "failed": last_order_with(app, failed.public_id), "pending": pending, "checkout": checkout}


def last_order_with(app, public_id):
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == public_id))
        db.session.expunge(order)
        return order


def table_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-order="([^"]+)">', html)


def csv_rows(response) -> list[dict]:
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status=paid",
        "product=points_small",
        "method=checkout",
        "status=failed&product=points_small",
        "q=buyer@example.com&status=pending",
        "q=BUYER",
    ],
)
def test_csv_export_matches_the_filtered_table(app, admin, orders_mix, query):
    html = admin.get(f"/admin/purchases?{query}").get_data(as_text=True)
    rows = csv_rows(admin.get(f"/admin/purchases.csv?{query}"))
    assert [r["order_id"] for r in rows] == table_ids(html)
    count = int(found(re.search(r'data-totals-count="(\d+)"', html), "totals count").group(1))
    assert count == len(rows)
    with app.app_context():
        for row in rows:
            order = found(db.session.scalar(select(Order).where(Order.public_id == row["order_id"])), row["order_id"])
            assert row["status"] == order.status and row["lookup_key"] == order.lookup_key
            assert row["amount"] == f"{order.amount // 100}.{order.amount % 100:02d}"
            assert row["email"] == "buyer@example.com"
            assert row["payment_intent"] == (order.stripe_payment_intent_id or "")


def test_purchases_filters_and_totals(app, admin, orders_mix):
    html = admin.get("/admin/purchases").get_data(as_text=True)
    assert len(table_ids(html)) == 5
    assert table_ids(html)[0] == orders_mix["checkout"].public_id  # newest first
    assert "USD: 2 paid, collected $17.00, refunded $0.00, net $17.00" in html
    paid = table_ids(admin.get("/admin/purchases?status=paid").get_data(as_text=True))
    assert sorted(paid) == sorted(o.public_id for o in orders_mix["paid"])
    assert table_ids(admin.get("/admin/purchases?status=failed").get_data(as_text=True)) == [
        orders_mix["failed"].public_id
    ]
    today = last_order(app).created_at.date().isoformat()
    assert len(table_ids(admin.get(f"/admin/purchases?date_from={today}&date_to={today}").get_data(as_text=True))) == 5
    assert table_ids(admin.get("/admin/purchases?date_to=2001-01-01").get_data(as_text=True)) == []
    bad = admin.get("/admin/purchases?date_from=yesterday").get_data(as_text=True)
    assert "is not a date" in bad and len(table_ids(bad)) == 5


@pytest.mark.parametrize(
    "field", ["public_id", "stripe_payment_intent_id", "stripe_checkout_session_id", "stripe_charge_id"]
)
def test_purchases_search_by_ids(app, admin, orders_mix, field):
    target = orders_mix["checkout"] if field == "stripe_checkout_session_id" else orders_mix["paid"][1]
    value = getattr(last_order_with(app, target.public_id), field)
    assert table_ids(admin.get(f"/admin/purchases?q={value}").get_data(as_text=True)) == [target.public_id]


def test_purchases_search_by_email_and_pagination(app, admin, orders_mix, monkeypatch):
    assert len(table_ids(admin.get("/admin/purchases?q=buyer@example.com").get_data(as_text=True))) == 5
    assert table_ids(admin.get("/admin/purchases?q=nobody@example.com").get_data(as_text=True)) == []
    assert table_ids(admin.get("/admin/purchases?q=boss").get_data(as_text=True)) == []
    monkeypatch.setattr(admin_reports, "PAGE_SIZE", 2)
    seen, url = [], "/admin/purchases"
    for _ in range(5):
        html = admin.get(url).get_data(as_text=True)
        seen += table_ids(html)
        found = re.search(r'href="([^"]+)" rel="next"', html)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
    assert len(seen) == 5 and len(set(seen)) == 5
    with app.app_context():
        expected = db.session.scalars(select(Order.public_id).order_by(Order.created_at.desc(), Order.id.desc())).all()
    assert seen == expected


def test_csv_cells_cannot_become_formulas():
    assert admin_reports._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert admin_reports._cell("+1") == "'+1" and admin_reports._cell("ok") == "ok"


def test_order_page_shows_everything(app, admin, orders_mix):
    order = last_order_with(app, orders_mix["paid"][0].public_id)
    page = admin.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    for expected in (
        order.stripe_payment_intent_id,
        order.stripe_charge_id,
        "buyer@example.com",
        "payment_intent.succeeded",
        "+550",
        "sandbox",
        "Payment Element",
        "new → <strong>pending</strong>",
    ):
        assert expected in page, expected


def test_dashboard_links_use_stripe_dashboard_urls_outside_the_sandbox(app):
    from storefront.stripe_gateway import StripeGateway

    test = StripeGateway("sk_test_x", mode="test")
    live = StripeGateway("sk_live_x", mode="live")
    sandbox = StripeGateway("sk_test_x", mode="sandbox")
    assert test.dashboard_url("pi_123") == "https://dashboard.stripe.com/test/payments/pi_123"
    assert live.dashboard_url("pi_123") == "https://dashboard.stripe.com/payments/pi_123"
    assert live.dashboard_url("cus_1") == "https://dashboard.stripe.com/customers/cus_1"
    assert sandbox.dashboard_url("pi_123") is None


# --- buyers and points ----------------------------------------------------------------------------


def _buyer_id(app, email="buyer@example.com") -> str:
    with app.app_context():
        return found(db.session.scalar(select(User.public_id).where(User.email == email)), f"user {email}")


def test_buyers_list_and_detail(app, admin, orders_mix):
    listing = admin.get("/admin/buyers?q=buyer").get_data(as_text=True)
    assert "buyer@example.com" in listing and ADMIN_EMAIL not in listing
    assert re.search(r'<td class="num ">1,950</td>\s*<td class="num">5</td>', listing)
    detail = admin.get(f"/admin/buyers/{_buyer_id(app)}").get_data(as_text=True)
    assert detail.count("/admin/orders/ord_") >= 5 and "1,950" in detail


def test_points_adjustment_needs_a_reason_and_records_the_admin(app, admin, buyer, sandbox):
    public_id = _buyer_id(app)
    page = admin.get(f"/admin/buyers/{public_id}").get_data(as_text=True)
    nonce = nonce_from(page)
    url = f"/admin/buyers/{public_id}/points"
    refused = admin.post(url, data={"points": "100", "reason": " ", "nonce": nonce})
    assert "Say why" in admin.get(refused.headers["Location"]).get_data(as_text=True)
    assert balance(app) == 0
    admin.post(url, data={"points": "-250", "reason": "Goodwill reversal", "nonce": nonce})
    admin.post(url, data={"points": "-250", "reason": "Goodwill reversal", "nonce": nonce})
    assert balance(app) == -250  # a balance may go negative; the double submit counted once
    with app.app_context():
        entry = found(db.session.scalar(select(PointsEntry)), "points entry")
        assert (entry.reason, entry.note, entry.amount) == ("adjustment", "Goodwill reversal", -250)
        assert found(db.session.get(User, entry.created_by_id), "adjusting admin").email == ADMIN_EMAIL
    detail = admin.get(f"/admin/buyers/{public_id}").get_data(as_text=True)
    assert "Goodwill reversal" in detail and "Ada Admin" in detail
    assert "Goodwill reversal" in buyer.get("/account/points").get_data(as_text=True)
    for n, bad in enumerate(("0", "abc", "1.5", "99999999", "١٢", "1_000", "9" * 5000, "1e3", "12,34", "--5")):
        response = admin.post(url, data={"points": bad, "reason": "why not", "nonce": f"other-nonce-{n:08d}"})
        assert response.status_code == 302
        assert "whole number" in admin.get(response.headers["Location"]).get_data(as_text=True) or bad in (
            "0",
            "99999999",
        )
    assert balance(app) == -250
    # the nonce goes into the ledger key: only the idempotency-key alphabet, 16-64 long
    for bad_nonce in ("bad-١", "short", "x" * 65, "with space in it!"):
        response = admin.post(url, data={"points": "10", "reason": "why not", "nonce": bad_nonce})
        assert "missing its token" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert balance(app) == -250
    admin.post(url, data={"points": "1,000", "reason": "Grouped digits", "nonce": "g" * 16})
    assert balance(app) == 750


# --- dashboard ------------------------------------------------------------------------------------


def test_dashboard_figures_and_an_accessible_chart(app, admin, orders_mix):
    html = admin.get("/admin/").get_data(as_text=True)
    assert "<script" not in html
    assert 'role="img"' in html and '<title id="revenue-title">' in html
    assert "<desc" in html and "Show the figures as a table" in html
    assert re.search(r"<dt>Revenue today</dt><dd>\$17\.00</dd>", html)
    assert re.search(r"<dt>Paid orders \(30 days\)</dt><dd>2</dd>", html)
    assert re.search(r"<dt>Failed orders \(30 days\)</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Payment success rate</dt><dd>66\.7%</dd>", html)
    assert html.count("<rect ") == 30
    with app.app_context():
        d = admin_reports.dashboard()
    assert d.days[-1]["amount"] == 1700 and d.days[-1]["count"] == 2
    assert sum(p["amount"] for p in d.days) == 1700
