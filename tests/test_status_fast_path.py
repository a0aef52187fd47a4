"""The two WSGI fast paths.

The status poll's (web/status_fast_path.py): with the order page's status token it answers
byte-for-byte as the view does when no Stripe sync is due, with one query, and leaves everything
else to Flask; tokens are order-scoped, signed, expiring and end with the sign-in.
The catalog page cache (web/page_cache.py): it replays the response Flask finished, headers and
all."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import delete, event, select

from storefront.extensions import db
from storefront.metrics import HTTP_REQUESTS
from storefront.models import Order, User, UserSession
from storefront.models.base import utcnow
from storefront.web import order_status
from storefront.web.page_cache import CatalogPageCache
from storefront.web.request_log import RequestObserver
from storefront.web.security import HostGuard
from storefront.web.status_fast_path import StatusFastPath
from storefront.web.webhooks import WebhookReceiver

from .conftest import TEST_PASSWORD, found
from .factories import make_order, price_of

#: the headers a poll's answer must carry, whoever answers it
HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "Content-Length",
)


def _order(app, email="buyer@example.com", *, status="paid", synced_ago=None) -> str:
    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == email)), f"user {email}")
        order = make_order(
            user,
            price_of("points_medium"),
            status=status,
            stripe_payment_intent_id=f"pi_fast_{secrets.token_hex(6)}",
            synced_at=None if synced_ago is None else utcnow() - synced_ago,
        )
        if status == "paid":
            user.points_balance = order.points
        db.session.commit()
        return order.public_id


def _set_status(app, public_id: str, status: str) -> None:
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.public_id == public_id)), "order")
        order.status = status
        order.synced_at = utcnow()
        db.session.commit()


def _page_token(client, public_id: str) -> str | None:
    """The status token the order page embeds for its script (None: the page has none)."""
    page = client.get(f"/orders/{public_id}").get_data(as_text=True)
    match = re.search(r'data-status-token="([^"]+)"', page)
    return match.group(1) if match else None


def _token(app, client, public_id: str) -> str:
    """The token of an open order's page (the order is opened for the page, then restored)."""
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.public_id == public_id)), "order")
        status = order.status
    _set_status(app, public_id, "processing")
    token = found(_page_token(client, public_id), "the page's status token")
    _set_status(app, public_id, status)
    return token


#: what Flask-Login answers a poll without a usable sign-in (login_required)
REFUSED = (302, 401)


def _signed(key: str, salt: str, claim: list) -> str:
    """A token as ours are made (same digest), with another key or salt."""
    return URLSafeTimedSerializer(key, salt=salt, signer_kwargs={"digest_method": hashlib.sha256}).dumps(claim)


def _poll(client, public_id: str, token: str | None, **headers):
    headers.setdefault("Accept", "application/json")
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(f"/orders/{public_id}/status", headers=headers)


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


@pytest.fixture
def statements(app):
    """The SQL statements the test's own thread runs (the test client's requests run here; the
    queue's worker threads, sending a sign-up's mail meanwhile, are not the poll's)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine
    thread = threading.get_ident()

    def before(conn, cursor, statement, *args):
        if threading.get_ident() == thread:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


def _flask_only(app, monkeypatch) -> None:
    """Take the fast path out (the layers in front of it stay)."""
    layer = app.wsgi_app
    while not isinstance(layer.wsgi_app, StatusFastPath):
        layer = layer.wsgi_app
    monkeypatch.setattr(layer, "wsgi_app", layer.wsgi_app.wsgi_app)


def test_installed(app):
    assert isinstance(app.wsgi_app, RequestObserver)  # outermost: every answer is logged and counted
    assert isinstance(app.wsgi_app.wsgi_app, HostGuard)  # then an untrusted Host is refused first
    assert isinstance(app.wsgi_app.wsgi_app.wsgi_app, WebhookReceiver)  # Stripe's deliveries, without Flask
    assert isinstance(app.wsgi_app.wsgi_app.wsgi_app.wsgi_app, StatusFastPath)
    assert isinstance(app.wsgi_app.wsgi_app.wsgi_app.wsgi_app.wsgi_app, CatalogPageCache)


@pytest.mark.parametrize("status", ["paid", "refunded", "canceled", "failed"])
def test_the_fast_path_answers_exactly_as_the_view(app, buyer, view_calls, monkeypatch, status):
    public_id = _order(app, status=status, synced_ago=timedelta(seconds=1))
    token = _token(app, buyer, public_id)
    anonymous = app.test_client()  # the token alone answers: no cookie needed
    fast = _poll(anonymous, public_id, token)
    assert fast.status_code == 200 and view_calls == []
    _flask_only(app, monkeypatch)
    by_token = _poll(anonymous, public_id, token)
    by_session = _poll(buyer, public_id, None)
    assert len(view_calls) == 2
    for answer in (by_token, by_session):
        assert answer.status_code == 200
        assert answer.get_data() == fast.get_data()
        for name in HEADERS:
            assert fast.headers.get(name) == answer.headers.get(name), name
    assert fast.headers["Cache-Control"] == "no-store"
    state = fast.get_json()
    assert state["order_status"] == status
    if status == "paid":
        assert state["points_balance"] == state["points_credited"] == 550
    if status == "failed":
        assert state["pay_url"] == f"/orders/{public_id}/pay"


def test_a_fast_answer_is_logged_and_counted_like_the_views(app, buyer, view_calls, caplog):
    """The fast path names the rule it answered (the request log does no URL matching for it)
    and binds the buyer and the order, as the view's log line has them."""
    public_id = _order(app, status="paid", synced_ago=timedelta(seconds=1))
    token = _token(app, buyer, public_id)
    with app.app_context():
        buyer_id = db.session.scalar(select(User.id).where(User.email == "buyer@example.com"))
    counted = HTTP_REQUESTS.labels("/orders/<public_id>/status", "GET", "200")
    before = counted._value.get()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="storefront.request"):
        assert _poll(app.test_client(), public_id, token).status_code == 200
    assert view_calls == [] and counted._value.get() == before + 1
    (line,) = [record.fields for record in caplog.records if record.name == "storefront.request"]
    assert (line["route"], line["status"], line["order_id"], line["user_id"]) == (
        "/orders/<public_id>/status",
        200,
        public_id,
        buyer_id,
    )
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])


def test_the_order_page_embeds_a_token_for_an_open_order_only(app, buyer, admin):
    open_order = _order(app, status="processing", synced_ago=timedelta(seconds=1))
    token = found(_page_token(buyer, open_order), "a token on the open order's page")
    assert order_status.tokens(app).verify(token, open_order) is not None
    assert _page_token(buyer, _order(app, status="paid")) is None  # settled: the page won't poll
    assert _page_token(admin, open_order) is None  # not the admin's order: the session answers
    assert _poll(admin, open_order, None).status_code == 200


def test_one_query_per_poll_on_either_door(app, buyer, view_calls, statements, monkeypatch):
    public_id = _order(app, status="processing", synced_ago=timedelta(seconds=1))
    token = found(_page_token(buyer, public_id), "the page's token")
    anonymous = app.test_client()
    statements.clear()
    assert _poll(anonymous, public_id, token).status_code == 200 and view_calls == []
    assert len(statements) == 1, statements
    _flask_only(app, monkeypatch)
    statements.clear()
    assert _poll(anonymous, public_id, token).status_code == 200 and len(view_calls) == 1
    assert len(statements) == 1, statements  # the view's token door: no user loaded either


@pytest.mark.parametrize("synced_ago", [None, timedelta(minutes=1)])
def test_an_order_due_for_a_sync_goes_to_the_view_with_its_token(app, buyer, view_calls, synced_ago):
    public_id = _order(app, status="processing", synced_ago=timedelta(seconds=1))
    token = found(_page_token(buyer, public_id), "the page's token")
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.public_id == public_id)), "order")
        order.status, order.synced_at = "pending", None if synced_ago is None else utcnow() - synced_ago
        db.session.commit()
    answer = _poll(app.test_client(), public_id, token)
    assert answer.status_code == 200 and answer.get_json()["order_status"] == "pending"
    assert len(view_calls) == 1  # the view claimed the slot (and asked Stripe)
    with app.app_context():
        synced_at = db.session.scalar(select(Order.synced_at).where(Order.public_id == public_id))
        assert synced_at is not None and synced_at > utcnow() - timedelta(seconds=30)


def test_foreign_forged_and_expired_tokens_are_refused(app, client, auth, catalog, view_calls, monkeypatch):
    auth.signup(email="other@example.com")
    theirs = _order(app, "other@example.com", status="paid")
    auth.logout()
    auth.signup()
    mine = _order(app, status="paid")
    token = _token(app, client, mine)
    stranger = app.test_client()
    assert _poll(stranger, mine, token).status_code == 200 and view_calls == []
    claim = order_status.tokens(app).serializer.loads(token)

    refused = {
        "another order's token": (theirs, token),
        "a forged token": (mine, _signed("not-our-key", order_status.TOKEN_SALT, claim)),
        "another salt": (mine, _signed(app.config["SECRET_KEY"], "another-salt", claim)),
        "a tampered token": (mine, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
        "garbage": (mine, "not.a.token"),
        # well signed, but naming their order with my sign-in: the owner check refuses it
        "a token for an order not the buyer's": (theirs, order_status.tokens(app).issue(theirs, claim[1], claim[2])),
    }
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 2 * 86400)
    refused["an expired token"] = (mine, order_status.tokens(app).issue(*claim))
    monkeypatch.setattr(time, "time", real_time)
    for what, (public_id, bad) in refused.items():
        calls = len(view_calls)
        response = _poll(stranger, public_id, bad)
        assert response.status_code in REFUSED, what  # the view asked the session: none
        assert len(view_calls) == calls + 1, what
    # the owner of the other order, with a token for mine: still only their own order's answer
    assert _poll(client, theirs, token).status_code == 404


def test_no_token_or_another_scheme_falls_through_to_the_session(app, buyer, view_calls):
    public_id = _order(app, status="paid")
    assert _poll(buyer, public_id, None).status_code == 200
    assert buyer.get(f"/orders/{public_id}/status", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 200
    assert len(view_calls) == 2
    assert _poll(app.test_client(), public_id, None).status_code in REFUSED
    assert _poll(buyer, "ord_unknown", None).status_code == 404


def test_a_token_ends_with_its_sign_in(app, client, auth, catalog, view_calls):
    """Log-out deletes the sign-in row the token names: its page's poll is no longer answered;
    another device's token (another sign-in) still is, on the fast path."""
    auth.signup()
    public_id = _order(app, status="processing", synced_ago=timedelta(seconds=1))
    other = app.test_client()
    assert other.post("/login", data={"email": "buyer@example.com", "password": TEST_PASSWORD}).status_code == 302
    token, others = _page_token(client, public_id), _page_token(other, public_id)
    assert token and others and token != others
    assert _poll(client, public_id, token).status_code == 200
    assert view_calls == []
    auth.logout()
    assert _poll(client, public_id, token).status_code in REFUSED  # the view: no sign-in, no session
    assert len(view_calls) == 1
    assert _poll(other, public_id, others).status_code == 200
    assert len(view_calls) == 1  # the other device, still signed in, on the fast path
    with app.app_context():  # "sign out everywhere" (an admin, a password change)
        db.session.execute(delete(UserSession))
        db.session.commit()
    assert _poll(app.test_client(), public_id, others).status_code in REFUSED


def test_a_status_path_with_a_trailing_newline_is_not_the_fast_path(app, buyer, view_calls):
    public_id = _order(app, status="paid")
    token = _token(app, buyer, public_id)
    response = buyer.get(f"/orders/{public_id}/status%0A", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404


# --- the catalog page cache ------------------------------------------------------------------


def test_the_cached_catalog_carries_every_header_of_a_fresh_render(app, catalog, monkeypatch):
    """Whatever ``after_request`` adds (the security headers, and a header a later change might
    add) is part of what the cache replays."""
    calls = []
    view = app.view_functions["shop.index"]

    def counting(*args, **kwargs):
        calls.append(1)
        return view(*args, **kwargs)

    def extra_header(response):
        response.headers["X-Added-Later"] = "yes"
        return response

    monkeypatch.setitem(app.view_functions, "shop.index", counting)
    monkeypatch.setitem(app.after_request_funcs, None, [*app.after_request_funcs.get(None, []), extra_header])
    app.extensions["catalog_page_cache"].clear()
    fresh = app.test_client().get("/")
    cached = app.test_client().get("/")
    head = app.test_client().head("/")
    assert len(calls) == 1  # the second and the HEAD came from the cache
    assert cached.get_data() == fresh.get_data()
    assert _stored_headers(cached) == _stored_headers(fresh)
    assert fresh.headers["X-Added-Later"] == "yes"
    assert "Content-Security-Policy" in fresh.headers and "X-Frame-Options" in fresh.headers
    assert head.get_data() == b""
    assert _stored_headers(head) == _stored_headers(fresh)
    # each answer's own request id (the request log adds it outside the cache), never a replayed one
    assert len({answer.headers["X-Request-Id"] for answer in (fresh, cached, head)}) == 3


def _stored_headers(response) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in response.headers.items() if name != "X-Request-Id")
