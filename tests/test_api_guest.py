"""Guest checkout through the JSON API (issue 14), end to end: the real app against the sandbox
over HTTP, webhooks delivered over real HTTP (twice each), the real queue's worker and a real SMTP
server (tests/mail_sink.py). A guest is a test client with no cookie at all, as a front end on
another origin calling ``fetch`` without credentials.

* a guest pays -> the existing VERIFIED account with that address is credited once, however many
  times the payment is applied (every webhook twice, the status poll);
* a guest pays, no account -> paid but unclaimed; the receipt says how to claim; sign up with the
  address, click the verification link from the mail -> claimed once (a second click: nothing);
* an unverified account with the address never claims (until it verifies);
* an email change confirmed to the guest's address claims too;
* return URLs: a front end's origin in API_CORS_ORIGINS is used (``session_id`` appended; cancel
  goes through the store, which expires the session); any other origin -> the store's own pages
  on STORE_URL;
* a signed-in call with our session cookie but no CSRF token -> 400; plans are not sold to guests.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import delete, func, select, update

from storefront.extensions import db
from storefront.models import Order, PointsEntry, Price, User
from storefront.models.base import utcnow
from storefront.services import fulfilment, guest_orders
from storefront.services.uow import unit_of_work

from .conftest import AuthActions, csrf_token_from, found
from .queue_worker import settle
from .test_subscriptions import flush

GUEST = "guest@example.com"
FRONT_END = "http://front.example:5173"


def _price_id(app, lookup_key: str) -> str:
    with app.app_context():
        return found(db.session.scalar(select(Price.stripe_price_id).where(Price.lookup_key == lookup_key)), lookup_key)


def _create(client, body):
    return client.post("/api/create-checkout-session", json=body)


def _guest_checkout(app, lookup_key="points_medium", **extra) -> dict:
    """A guest's create-checkout-session (a client with no cookie); returns {url, sessionId}."""
    guest = app.test_client()
    response = _create(guest, {"priceId": _price_id(app, lookup_key), **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    return response.get_json()


def _pay(sandbox, session_id: str, email: str = GUEST, card: str = "pm_card_visa") -> dict:
    """Pay on the hosted Checkout as the buyer would, typing ``email``."""
    return sandbox.control("POST", f"/_sandbox/checkout/{session_id}/pay", {"payment_method": card, "email": email})


def _order(app, session_id: str) -> Order:
    with app.app_context():
        order = found(db.session.scalar(select(Order).where(Order.stripe_checkout_session_id == session_id)), "order")
        db.session.expunge(order)
        db.session.remove()
    return order


def _user(app, email: str) -> User:
    with app.app_context():
        user = found(db.session.scalar(select(User).where(User.email == email)), email)
        db.session.expunge(user)
        db.session.remove()
    return user


def _entries(app, order_id: int) -> list[tuple[int, int, str]]:
    with app.app_context():
        rows = db.session.execute(
            select(PointsEntry.user_id, PointsEntry.amount, PointsEntry.key).where(PointsEntry.order_id == order_id)
        ).all()
        db.session.remove()
    return [(int(user_id), int(amount), str(key)) for user_id, amount, key in rows]


def _poll(app, session_id: str) -> str:
    """check-payment-status with its Stripe sync due now, as a guest (no cookie)."""
    with app.app_context():
        db.session.execute(update(Order).values(synced_at=None))
        db.session.commit()
    response = app.test_client().get(f"/api/check-payment-status/{session_id}")
    assert response.status_code == 200
    return response.get_json()["status"]


def _signup_and_verify(app, client, mail_sink, email: str) -> None:
    AuthActions(client).signup(email=email)
    message = mail_sink.wait_for(to=email, kind="verify_email")
    assert client.get(mail_sink.link(message, "/verify-email/")).status_code == 302
    assert _user(app, email).email_verified


@pytest.fixture
def duplicated(sandbox, webhooks):
    """Every webhook delivered twice."""
    sandbox.control("POST", "/_sandbox/webhooks/faults", {"duplicate": True})
    yield
    sandbox.control("DELETE", "/_sandbox/webhooks/faults")


# --- paying as a guest ------------------------------------------------------------------------------


def test_a_guest_pays_and_the_verified_account_with_that_address_is_credited_once(
    app, client, catalog, sandbox, duplicated, mail_sink
):
    _signup_and_verify(app, client, mail_sink, GUEST)
    created = _guest_checkout(app)
    assert created["url"] == f"{sandbox.url}/c/pay/{created['sessionId']}"
    session = sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"])
    # Checkout collects the email: no customer, no customer_email; the amount is the catalog's
    assert session.customer is None and session.customer_email is None
    assert session.amount_total == 500 and session.currency == "usd" and session.mode == "payment"
    assert _poll(app, created["sessionId"]) == "unpaid"

    _pay(sandbox, created["sessionId"], email="Guest@Example.com")
    flush(sandbox)  # every event twice
    assert _poll(app, created["sessionId"]) == "paid"
    assert _poll(app, created["sessionId"]) == "paid"
    settle()

    user, order = _user(app, GUEST), _order(app, created["sessionId"])
    assert order.status == "paid" and order.user_id == user.id and order.buyer_email == GUEST
    assert user.points_balance == 550
    assert _entries(app, order.id) == [(user.id, 550, f"order:{order.public_id}:purchase")]
    receipt = mail_sink.wait_for(to=GUEST, kind="receipt")
    mail_sink.assert_nothing(settle=0.3, kind="action_needed")
    assert len(mail_sink.messages(kind="receipt")) == 1
    assert "added to your balance" in mail_sink.text(receipt) and "create an account" not in mail_sink.text(receipt)


def test_a_guest_without_an_account_claims_the_order_by_signing_up_and_verifying(
    app, client, catalog, sandbox, duplicated, mail_sink
):
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    assert _poll(app, created["sessionId"]) == "paid"
    order = _order(app, created["sessionId"])
    assert order.status == "paid" and order.user_id is None and order.buyer_email == GUEST
    assert _entries(app, order.id) == []

    # the receipt goes to the address Checkout collected, links to the public status page and
    # says how to claim; that page shows the order to whoever holds the session id
    receipt = mail_sink.wait_for(to=GUEST, kind="receipt")
    text = mail_sink.text(receipt)
    assert "$2.00" in text and "create an account with this email address" in text
    status_link = mail_sink.link(receipt, "/checkout/status?session_id=")
    page = app.test_client().get(urlsplit(status_link).path + "?" + urlsplit(status_link).query)
    assert page.status_code == 200 and 'data-status="paid"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert GUEST not in page.get_data(as_text=True)

    signup_link = mail_sink.link(receipt, "/signup")
    assert client.get(urlsplit(signup_link).path).status_code == 200
    AuthActions(client).signup(email=GUEST)
    assert _user(app, GUEST).points_balance == 0  # not verified yet: nothing claimed
    assert _order(app, created["sessionId"]).user_id is None
    verify = mail_sink.link(mail_sink.wait_for(to=GUEST, kind="verify_email"), "/verify-email/")
    assert client.get(verify).status_code == 302
    assert client.get(verify).status_code == 302  # a second click claims nothing more
    settle()

    user, order = _user(app, GUEST), _order(app, created["sessionId"])
    assert order.user_id == user.id and user.points_balance == 200
    assert _entries(app, order.id) == [(user.id, 200, f"order:{order.public_id}:purchase")]
    assert order.public_id in client.get("/orders/").get_data(as_text=True)
    assert len(mail_sink.messages(kind="receipt")) == 1  # receipted once, when paid


def test_an_unverified_account_never_claims_until_it_verifies(app, client, catalog, sandbox, duplicated, mail_sink):
    AuthActions(client).signup(email=GUEST)  # someone signs up with the address; no click
    created = _guest_checkout(app, "lifetime")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    assert _poll(app, created["sessionId"]) == "paid"
    settle()
    user, order = _user(app, GUEST), _order(app, created["sessionId"])
    assert order.user_id is None and user.points_balance == 0 and user.lifetime_since is None
    assert _entries(app, order.id) == []
    # the address's owner verifies: claimed now (the Lifetime plan with its points)
    verify = mail_sink.link(mail_sink.wait_for(to=GUEST, kind="verify_email"), "/verify-email/")
    assert client.get(verify).status_code == 302
    user = _user(app, GUEST)
    assert _order(app, created["sessionId"]).user_id == user.id
    assert user.points_balance == 50000 and user.lifetime_since is not None


def test_an_email_change_confirmed_to_the_guests_address_claims_the_order(
    app, client, catalog, sandbox, webhooks, mail_sink
):
    _signup_and_verify(app, client, mail_sink, "old@example.com")
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    assert _order(app, created["sessionId"]).user_id is None
    page = client.get("/account/").get_data(as_text=True)
    response = client.post(
        "/account/email",
        data={"new_email": GUEST, "current_password": "correct-horse-battery", "csrf_token": csrf_token_from(page)},
    )
    assert response.status_code in (302, 303)
    confirm = mail_sink.link(mail_sink.wait_for(to=GUEST, kind="email_change_confirm"), "/account/email/confirm/")
    path = urlsplit(confirm).path
    form = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token_from(form)}).status_code in (302, 303)
    user = _user(app, GUEST)
    assert _order(app, created["sessionId"]).user_id == user.id and user.points_balance == 200


def test_a_password_reset_proves_the_address_and_claims(app, client, catalog, sandbox, webhooks, mail_sink):
    AuthActions(client).signup(email=GUEST)  # never clicked the verification link
    AuthActions(client).logout()
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    assert _order(app, created["sessionId"]).user_id is None
    client.post("/forgot-password", data={"email": GUEST})
    link = mail_sink.link(mail_sink.wait_for(to=GUEST, kind="password_reset"), "/reset-password/")
    done = client.post(link, data={"password": "a-fresh-start-2026", "confirm": "a-fresh-start-2026"})
    assert done.status_code in (302, 303)
    user = _user(app, GUEST)
    assert user.email_verified and user.points_balance == 200
    assert _order(app, created["sessionId"]).user_id == user.id


def test_a_refund_before_the_claim_takes_back_nothing_and_the_claim_grants_what_was_kept(
    app, client, catalog, sandbox, webhooks, mail_sink
):
    created = _guest_checkout(app, "points_medium")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    order = _order(app, created["sessionId"])
    sandbox.stripe.v1.refunds.create({"payment_intent": found(order.stripe_payment_intent_id), "amount": 250})
    flush(sandbox)
    order = _order(app, created["sessionId"])
    assert order.status == "partially_refunded" and order.user_id is None and _entries(app, order.id) == []
    assert mail_sink.wait_for(to=GUEST, kind="refund")
    _signup_and_verify(app, client, mail_sink, GUEST)
    assert _user(app, GUEST).points_balance == 275  # 550 less half, taken back in proportion


# --- the API's rules ----------------------------------------------------------------------------------


def test_return_urls_on_an_allowed_origin_are_used_others_fall_back_to_our_pages(app, catalog, sandbox, monkeypatch):
    monkeypatch.setitem(app.config, "API_CORS_ORIGINS", (FRONT_END,))
    created = _guest_checkout(
        app, successUrl="https://evil.example/steal", cancelUrl="http://front.example:5173@evil.example/"
    )
    session = sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"])
    order = _order(app, created["sessionId"])
    # never the Host header: STORE_URL (http://localhost in the tests)
    assert session.success_url == "http://localhost/checkout/status?session_id={CHECKOUT_SESSION_ID}"
    assert session.cancel_url == f"http://localhost/checkout/{order.public_id}/canceled"

    created = _guest_checkout(
        app, successUrl=f"{FRONT_END}/success?from=shop#top", cancelUrl=f"{FRONT_END.upper()}/cancel"
    )
    session = sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"])
    order = _order(app, created["sessionId"])
    assert session.success_url == f"{FRONT_END}/success?from=shop&session_id={{CHECKOUT_SESSION_ID}}#top"
    cancel = found(session.cancel_url)
    assert cancel.startswith(f"http://localhost/checkout/{order.public_id}/canceled?return_to=")
    # the buyer leaves Checkout: the session is expired, then back to the front end's page
    response = app.test_client().get(urlsplit(cancel).path + "?" + urlsplit(cancel).query)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{FRONT_END}/cancel?session_id={created['sessionId']}"
    assert sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"]).status == "expired"
    assert _poll(app, created["sessionId"]) == "canceled"
    # a crafted return_to elsewhere is not followed: our own page
    response = app.test_client().get(f"/checkout/{order.public_id}/canceled?return_to=https://evil.example/")
    assert response.status_code == 200 and 'data-status="canceled"' in response.get_data(as_text=True)


def test_return_urls_must_be_strings(app, catalog, sandbox):
    response = _create(app.test_client(), {"priceId": _price_id(app, "points_small"), "successUrl": 42})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_return_url"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_plans_are_not_sold_to_guests(app, catalog, sandbox):
    response = _create(app.test_client(), {"priceId": _price_id(app, "starter_monthly")})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "subscription_not_supported"


def test_a_signed_in_call_with_the_session_cookie_needs_the_csrf_token(app, client, auth, catalog, sandbox):
    auth.signup(email="member@example.com")
    price_id = _price_id(app, "points_small")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = _create(client, {"priceId": price_id})
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"
        token = csrf_token_from(client.get("/account/").get_data(as_text=True))
        response = client.post(
            "/api/create-checkout-session", json={"priceId": price_id}, headers={"X-CSRFToken": token}
        )
        assert response.status_code == 200
        guest = _create(app.test_client(), {"priceId": price_id})  # no cookie: no token needed
        assert guest.status_code == 200
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    mine = _order(app, response.get_json()["sessionId"])
    assert mine.user_id == _user(app, "member@example.com").id and mine.buyer_email is None
    assert _order(app, guest.get_json()["sessionId"]).user_id is None
    session = sandbox.stripe.v1.checkout.sessions.retrieve(response.get_json()["sessionId"])
    success = parse_qs(urlsplit(found(session.success_url)).query)
    assert session.success_url.startswith(f"http://localhost/orders/{mine.public_id}") and success == {
        "session_id": ["{CHECKOUT_SESSION_ID}"]
    }


def test_the_admin_sees_an_unclaimed_guest_order_with_its_address(app, admin, sandbox, webhooks):
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    order = _order(app, created["sessionId"])
    assert order.status == "paid" and order.user_id is None
    page = admin.get(f"/admin/purchases?q={GUEST}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert order.public_id in html and GUEST in html and "data-guest" in html
    page = admin.get(f"/admin/orders/{order.public_id}")
    assert page.status_code == 200 and GUEST in page.get_data(as_text=True)
    assert admin.get("/admin/purchases.csv").status_code == 200
    assert admin.get("/admin/").status_code == 200


def test_two_claims_at_once_claim_once(app, client, catalog, sandbox, webhooks, mail_sink):
    """Two verifications of the address finishing together (two tabs, a mail scanner): each runs
    claim_for; the order's lock and the ledger key make it one claim and one credit."""
    created = _guest_checkout(app, "points_medium")
    _pay(sandbox, created["sessionId"])
    flush(sandbox)
    _signup_and_verify(app, client, mail_sink, GUEST)  # the first claim
    user = _user(app, GUEST)
    with app.app_context():  # as if the claim had not happened yet: unclaimed again, no credit
        order = _order(app, created["sessionId"])
        db.session.execute(update(Order).where(Order.id == order.id).values(user_id=None))
        db.session.execute(update(User).where(User.id == user.id).values(points_balance=0))
        db.session.execute(delete(PointsEntry).where(PointsEntry.order_id == order.id))
        db.session.commit()
        db.session.remove()
    results: list[int] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        with app.app_context():
            barrier.wait()
            results.append(guest_orders.claim_for(user.id))
            db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results) == [0, 1]
    assert _user(app, GUEST).points_balance == 550
    assert _entries(app, order.id) == [(user.id, 550, f"order:{order.public_id}:purchase")]


def test_the_buyers_address_is_noted_even_from_a_stale_session_event(app, client, catalog, sandbox, mail_sink):
    """A newer event about the order applied first (say a refund's) makes the session's
    ``checkout.session.completed`` stale: its status changes nothing, but who paid is still news."""
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])  # no webhook endpoint: nothing applied yet
    session = sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"]).to_dict()
    with app.app_context():
        db.session.execute(update(Order).values(last_event_created=session["created"] + 3600))
        db.session.commit()
        with unit_of_work():
            fulfilment.apply_checkout_session(session, source="event:evt_old", event_created=session["created"])
        db.session.remove()
    order = _order(app, created["sessionId"])
    assert order.buyer_email == GUEST and order.status == "pending"  # noted; the stale status not applied
    _signup_and_verify(app, client, mail_sink, GUEST)
    assert _poll(app, created["sessionId"]) == "paid"  # the status poll's sync applies the payment
    assert _user(app, GUEST).points_balance == 200


def test_a_second_lifetime_bought_as_a_guest_is_flagged_for_a_refund(
    app, client, catalog, sandbox, webhooks, mail_sink, caplog
):
    """A signed-in buyer can't buy Lifetime twice (the store refuses before Stripe); a guest's
    address is only known once paid, so the second purchase is credited and logged for the admin."""
    _signup_and_verify(app, client, mail_sink, GUEST)
    first, second = _guest_checkout(app, "lifetime"), _guest_checkout(app, "lifetime")
    _pay(sandbox, first["sessionId"])
    flush(sandbox)
    since = _user(app, GUEST).lifetime_since
    assert since is not None and "owns the Lifetime plan already" not in caplog.text
    _pay(sandbox, second["sessionId"])
    flush(sandbox)
    order = _order(app, second["sessionId"])
    assert order.status == "paid" and order.user_id == _user(app, GUEST).id
    assert _user(app, GUEST).lifetime_since == since
    assert f"order {order.public_id}: user {order.user_id} owns the Lifetime plan already" in caplog.text


def test_a_payment_applied_while_the_address_is_being_verified_is_credited_once(
    app, client, catalog, sandbox, mail_sink
):
    """The payment (webhook or poll) and the verification commit at the same moment: the payment
    waits for the user row the verification holds (PostgreSQL: FOR UPDATE; SQLite: its one
    writer), then sees the address verified; the verification's claim finds nothing left."""
    AuthActions(client).signup(email=GUEST)  # not verified yet
    created = _guest_checkout(app, "points_small")
    _pay(sandbox, created["sessionId"])  # no webhook endpoint: nothing applied yet
    session = sandbox.stripe.v1.checkout.sessions.retrieve(created["sessionId"]).to_dict()
    user = _user(app, GUEST)
    holding, release = threading.Event(), threading.Event()
    claimed: list[int] = []

    def verify() -> None:
        with app.app_context():
            db.session.execute(update(User).where(User.id == user.id).values(email_verified_at=utcnow()))
            holding.set()
            release.wait(10)
            db.session.commit()
            claimed.append(guest_orders.claim_for(user.id))
            db.session.remove()

    def apply_payment() -> None:
        with app.app_context():
            holding.wait(10)
            with unit_of_work():
                fulfilment.apply_checkout_session(session, source="sync")
            db.session.remove()

    threads = [threading.Thread(target=verify), threading.Thread(target=apply_payment)]
    for thread in threads:
        thread.start()
    holding.wait(10)
    time.sleep(0.3)  # the payment is waiting for the verification's lock by now
    release.set()
    for thread in threads:
        thread.join(timeout=20)
    order = _order(app, created["sessionId"])
    assert order.status == "paid" and order.user_id == user.id
    assert _user(app, GUEST).points_balance == 200
    assert _entries(app, order.id) == [(user.id, 200, f"order:{order.public_id}:purchase")]
    assert claimed == [0]
