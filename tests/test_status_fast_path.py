"""The status poll's WSGI fast path (web/status_fast_path.py): byte-for-byte the view's answer
when no Stripe sync is due, and Flask's own handling for everything else."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from storefront.extensions import db
from storefront.models import Order, Price, User
from storefront.models.base import utcnow
from storefront.web.security import HostGuard
from storefront.web.status_fast_path import StatusFastPath

from .conftest import TEST_PASSWORD, found


def _order(app, email="buyer@example.com", *, status="paid", synced_ago=None) -> str:
    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == email)), f"user {email}")
        price = found(db.session.scalar(select(Price).where(Price.lookup_key == "points_medium")), "points_medium")
        order = Order(user_id=user.id, price_id=price.id, lookup_key=price.lookup_key,
                      product_name=price.product.name, points=price.product.points,
                      amount=price.unit_amount, currency=price.currency, method="payment_element",
                      status=status, stripe_payment_intent_id=f"pi_fast_{secrets.token_hex(6)}",
                      paid_at=utcnow() if status == "paid" else None,
                      synced_at=None if synced_ago is None else utcnow() - synced_ago)
        if status == "paid":
            user.points_balance = order.points
        db.session.add(order)
        db.session.commit()
        return order.public_id


@pytest.fixture
def view_calls(app, monkeypatch):
    """Counts the Flask view's calls (the fast path never enters Flask)."""
    calls = []
    view = app.view_functions["orders.status"]

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return view(*args, **kwargs)
    monkeypatch.setitem(app.view_functions, "orders.status", counting)
    return calls


def test_installed(app):
    assert isinstance(app.wsgi_app, HostGuard)  # outermost: an untrusted Host is refused first
    assert isinstance(app.wsgi_app.wsgi_app, StatusFastPath)


def _flask_only(app, monkeypatch) -> None:
    """Take the fast path out (the host guard stays in front)."""
    guard = app.wsgi_app
    monkeypatch.setattr(guard, "wsgi_app", guard.wsgi_app.wsgi_app)


@pytest.mark.parametrize("status", ["paid", "refunded", "canceled"])
def test_settled_order_answered_without_flask_exactly_as_the_view(app, buyer, view_calls,
                                                                  monkeypatch, status):
    public_id = _order(app, status=status)
    fast = buyer.get(f"/orders/{public_id}/status")
    assert fast.status_code == 200 and view_calls == []
    _flask_only(app, monkeypatch)
    slow = buyer.get(f"/orders/{public_id}/status")
    assert len(view_calls) == 1
    assert fast.get_data() == slow.get_data()
    assert fast.mimetype == slow.mimetype == "application/json"
    if status == "paid":
        assert fast.get_json()["points_balance"] == fast.get_json()["points_credited"] == 550


def test_open_order_recently_synced_is_answered_from_the_database(app, buyer, view_calls,
                                                                  monkeypatch):
    public_id = _order(app, status="processing", synced_ago=timedelta(seconds=1))
    fast = buyer.get(f"/orders/{public_id}/status")
    assert view_calls == [] and fast.get_json()["status"] == "processing"
    _flask_only(app, monkeypatch)
    assert buyer.get(f"/orders/{public_id}/status").get_data() == fast.get_data()


@pytest.mark.parametrize("synced_ago", [None, timedelta(minutes=1)])
def test_open_order_due_for_a_sync_goes_to_the_view(app, buyer, view_calls, synced_ago):
    public_id = _order(app, status="pending", synced_ago=synced_ago)
    assert buyer.get(f"/orders/{public_id}/status").status_code == 200
    assert len(view_calls) == 1  # the view claimed the slot (and asked Stripe)


def test_failed_order_keeps_its_pay_link(app, buyer, view_calls, monkeypatch):
    public_id = _order(app, status="failed", synced_ago=timedelta(seconds=1))
    fast = buyer.get(f"/orders/{public_id}/status")
    assert view_calls == [] and fast.get_json()["pay_url"] == f"/orders/{public_id}/pay"
    _flask_only(app, monkeypatch)
    assert buyer.get(f"/orders/{public_id}/status").get_data() == fast.get_data()


def test_everything_else_falls_through_to_flask(app, client, auth, catalog, view_calls):
    auth.signup(email="other@example.com")
    theirs = _order(app, "other@example.com")
    auth.logout()
    auth.signup()
    assert client.get(f"/orders/{theirs}/status").status_code == 404  # not the owner
    assert client.get("/orders/ord_unknown/status").status_code == 404
    assert len(view_calls) == 2
    mine = _order(app)
    assert client.get(f"/orders/{mine}/status").status_code == 200
    assert len(view_calls) == 2  # the fast path
    # another browser's identifier: Flask-Login's session protection ("strong") must see it
    assert client.get(f"/orders/{mine}/status",
                      headers={"User-Agent": "another browser"}).status_code in (302, 401)
    assert len(view_calls) == 3
    client.set_cookie("session", "tampered")
    response = client.get(f"/orders/{mine}/status")
    assert response.status_code in (302, 401) and len(view_calls) == 4  # login_required


def test_the_fast_path_sends_the_security_headers_and_no_store(app, buyer, view_calls,
                                                              monkeypatch):
    public_id = _order(app, status="paid")
    fast = buyer.get(f"/orders/{public_id}/status")
    assert view_calls == []
    _flask_only(app, monkeypatch)
    slow = buyer.get(f"/orders/{public_id}/status")
    assert len(view_calls) == 1
    for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
                 "Referrer-Policy", "Cache-Control"):
        assert fast.headers.get(name) == slow.headers.get(name), name
    assert fast.headers["Cache-Control"] == "no-store"


def test_a_status_path_with_a_trailing_newline_is_not_the_fast_path(app, buyer, view_calls):
    public_id = _order(app, status="paid")
    response = buyer.get(f"/orders/{public_id}/status%0A")
    assert response.status_code == 404


def test_a_logged_out_cookie_is_refused_and_other_devices_keep_the_fast_path(app, client, auth,
                                                                             catalog, view_calls):
    auth.signup()
    public_id = _order(app, status="paid")
    other = app.test_client()
    assert other.post("/login", data={"email": "buyer@example.com",
                                      "password": TEST_PASSWORD}).status_code == 302
    old_session = client.get_cookie("session").value
    assert client.get(f"/orders/{public_id}/status").status_code == 200
    assert other.get(f"/orders/{public_id}/status").status_code == 200
    assert view_calls == []  # both answered by the fast path (the cookie is now cached)
    auth.logout()
    replay = app.test_client()
    replay.set_cookie("session", old_session)
    response = replay.get(f"/orders/{public_id}/status")
    assert response.status_code in (302, 401)  # the view refused it: its sign-in row is gone
    assert len(view_calls) == 1
    assert other.get(f"/orders/{public_id}/status").status_code == 200
    assert len(view_calls) == 1  # the other device is still signed in, on the fast path
