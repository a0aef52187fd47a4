"""The account mails over HTTP, through the real queue and a real SMTP server (tests/mail_sink.py):
verify the address, reset a forgotten password, change the email. Each test clicks the link from
the mail that arrived, with the test client."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select, update

from storefront.extensions import db
from storefront.models import OutboundMail, User, UserSession
from storefront.services import account_mail, mail
from storefront.services.uow import unit_of_work

from .conftest import TEST_PASSWORD, AuthActions, csrf_token_from, found
from .queue_worker import queue_down, settle

NEW_PASSWORD = "a-fresh-start-2026"


def _user(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user is not None, f"no user {email}"
        db.session.expunge(user)
        db.session.remove()
    return user


def _outbox(app, kind: str | None = None) -> list[OutboundMail]:
    with app.app_context():
        query = select(OutboundMail).order_by(OutboundMail.id)
        if kind:
            query = query.where(OutboundMail.kind == kind)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        db.session.remove()
    return rows


def _verify(app, client, mail_sink, email: str) -> None:
    message = mail_sink.wait_for(to=email, kind="verify_email")
    response = client.get(mail_sink.link(message, "/verify-email/"))
    assert response.status_code == 302
    assert _user(app, email).email_verified


def _old_token(app, kind: str, payload: dict, age_seconds: int) -> str:
    """A token of ``kind`` signed ``age_seconds`` ago (as the app signs them)."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=account_mail._SALTS[kind], signer=PastSigner)
    return serializer.dumps(payload)


# --------------------------------------------------------------------------- verification
def test_signup_mails_a_verification_link_that_verifies_the_address(app, client, auth, sandbox, mail_sink):
    response = auth.signup(email="new@example.com")
    assert response.status_code == 302
    assert not _user(app, "new@example.com").email_verified
    page = client.get("/account/").get_data(as_text=True)
    assert "data-email-unverified" in page and "data-change-email-locked" in page

    message = mail_sink.wait_for(to="new@example.com", kind="verify_email")
    assert message["Subject"] == "Confirm your email address for Storefront"
    assert message.get_content_type() == "multipart/alternative"
    text, html = mail_sink.text(message), mail_sink.html(message)
    assert "48 hours" in text and "Storefront" in html and "http://localhost" in html
    assert TEST_PASSWORD not in text + html
    link = mail_sink.link(message, "/verify-email/")
    assert link.startswith("http://localhost/verify-email/")

    response = client.get(link)
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/")
    assert _user(app, "new@example.com").email_verified
    page = client.get("/account/").get_data(as_text=True)
    assert "data-email-verified" in page and "data-change-email-locked" not in page
    # the link again (a second click, a mail scanner): no harm, still verified
    assert client.get(link).status_code == 302
    # no token in the outbox: the link was signed when the mail was sent
    assert all("verify-email" not in row.context for row in _outbox(app))


def test_resend_verification_from_the_account_page(app, client, auth, sandbox, mail_sink):
    auth.signup(email="again@example.com")
    mail_sink.wait_for(to="again@example.com", kind="verify_email")
    response = client.post("/account/verify-email", follow_redirects=True)
    assert "We sent a new confirmation link" in response.get_data(as_text=True)
    second = mail_sink.wait_for(to="again@example.com", kind="verify_email", count=2)
    assert client.get(mail_sink.link(second, "/verify-email/")).status_code == 302
    assert _user(app, "again@example.com").email_verified
    response = client.post("/account/verify-email", follow_redirects=True)
    assert "confirmed already" in response.get_data(as_text=True)
    settle()
    assert len(mail_sink.messages(kind="verify_email")) == 2


def test_verification_resends_are_rate_limited(app, client, auth, sandbox, mail_sink, monkeypatch):
    monkeypatch.setitem(app.config, "ACCOUNT_MAIL_LIMIT_PER_ACCOUNT", "2 per hour")
    auth.signup(email="spam@example.com")
    assert client.post("/account/verify-email").status_code == 303
    assert client.post("/account/verify-email").status_code == 303
    response = client.post("/account/verify-email", follow_redirects=True)
    assert "Please wait" in response.get_data(as_text=True)
    settle()
    assert len(_outbox(app, "verify_email")) == 3  # sign-up's + two resends


def test_bad_expired_or_stale_verification_links_are_refused(app, client, auth, sandbox, mail_sink):
    auth.signup(email="stale@example.com")
    user = _user(app, "stale@example.com")
    assert client.get("/verify-email/not-a-token").status_code == 400
    expired = _old_token(app, "verify_email", {"u": user.id, "e": user.email}, 49 * 3600)
    response = client.get(f"/verify-email/{expired}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    other = _old_token(app, "verify_email", {"u": user.id, "e": "someone-else@example.com"}, 60)
    assert client.get(f"/verify-email/{other}").status_code == 400
    # a reset token is not a verification token (another salt)
    wrong_kind = _old_token(app, "password_reset", {"u": user.id, "e": user.email}, 60)
    assert client.get(f"/verify-email/{wrong_kind}").status_code == 400
    assert not _user(app, "stale@example.com").email_verified


def test_unverified_accounts_can_still_buy(app, client, auth, catalog, sandbox, mail_sink):
    auth.signup(email="shopper@example.com")
    response = client.get("/")
    assert response.status_code == 200
    assert not _user(app, "shopper@example.com").email_verified
    # buying needs a Stripe customer, not a verified address
    assert _user(app, "shopper@example.com").stripe_customer_id


def test_seed_demo_users_are_verified(app, runner, sandbox):
    with app.app_context():
        assert runner.invoke(args=["seed-demo"]).exit_code == 0
    assert _user(app, "buyer@example.com").email_verified
    assert _user(app, "admin@example.com").email_verified


# --------------------------------------------------------------------------- password reset
def _forgot(client, email: str, **kw):
    return client.post("/forgot-password", data={"email": email}, **kw)


def test_login_page_links_to_forgot_password_and_the_lockout_points_there(app, client, sandbox, monkeypatch):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/forgot-password"' in page
    assert client.get("/forgot-password").status_code == 200
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT", "1 per hour")
    client.post("/login", data={"email": "x@example.com", "password": "wrong-password-1"})
    response = client.post("/login", data={"email": "x@example.com", "password": "wrong-password-1"})
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "reset your password" in page and 'href="/forgot-password"' in page


def test_forgot_password_answers_the_same_for_unknown_addresses(app, client, auth, sandbox, mail_sink):
    auth.signup(email="known@example.com")
    auth.logout()
    client.get("/login")  # shows (and drops) the log-out message
    mail_sink.wait_for(to="known@example.com", kind="verify_email")
    known = _forgot(client, "Known@Example.com")
    known_page = client.get(known.headers["Location"]).get_data(as_text=True)
    unknown = _forgot(client, "nobody@example.com")
    unknown_page = client.get(unknown.headers["Location"]).get_data(as_text=True)
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert "If an account uses known@example.com" in known_page
    assert known_page.replace("known@example.com", "X") == unknown_page.replace("nobody@example.com", "X")
    settle()
    mail_sink.wait_for(to="known@example.com", kind="password_reset")
    assert mail_sink.messages(to="nobody@example.com") == []
    assert [row.recipient for row in _outbox(app, "password_reset")] == ["known@example.com"]


def test_password_reset_link_sets_a_new_password_once_and_ends_other_sessions(app, client, auth, sandbox, mail_sink):
    auth.signup(email="reset@example.com")
    other_device = app.test_client()
    assert AuthActions(other_device).login(email="reset@example.com").status_code == 302
    assert other_device.get("/account/").status_code == 200
    auth.logout()

    _forgot(client, "reset@example.com")
    message = mail_sink.wait_for(to="reset@example.com", kind="password_reset")
    text = mail_sink.text(message)
    assert "60 minutes" in text and TEST_PASSWORD not in text
    link = mail_sink.link(message, "/reset-password/")

    form = client.get(link)
    assert form.status_code == 200 and form.headers["Cache-Control"] == "no-store"
    assert form.headers["Referrer-Policy"] == "no-referrer"
    assert "reset@example.com" in form.get_data(as_text=True)
    weak = client.post(link, data={"password": "1234567890123", "confirm": "1234567890123"})
    assert weak.status_code == 400 and "only digits" in weak.get_data(as_text=True)
    mismatch = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 400

    done = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"].endswith("/account/")
    assert client.get("/account/").status_code == 200  # signed in by the reset
    assert other_device.get("/account/").status_code == 302  # every other sign-in ended
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
        db.session.remove()
    assert _user(app, "reset@example.com").email_verified  # the link reached the address

    # single use: the same link again is dead (GET and POST)
    assert client.get(link).status_code == 400
    again = client.post(link, data={"password": "yet-another-pass-99", "confirm": "yet-another-pass-99"})
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    auth.logout()
    assert auth.login(email="reset@example.com").status_code == 401
    assert auth.login(email="reset@example.com", password=NEW_PASSWORD).status_code == 302


def test_reset_link_expires_after_an_hour_and_dies_with_a_password_change(app, client, auth, sandbox, mail_sink):
    auth.signup(email="late@example.com")
    _forgot(client, "late@example.com")
    link = mail_sink.link(mail_sink.wait_for(to="late@example.com", kind="password_reset"), "/reset-password/")
    user = _user(app, "late@example.com")
    with app.app_context():
        fingerprint = account_mail._fingerprint(found(db.session.get(User, user.id)))
        db.session.remove()
    old = _old_token(app, "password_reset", {"u": user.id, "f": fingerprint}, 3601)
    response = client.get(f"/reset-password/{old}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    fresh = _old_token(app, "password_reset", {"u": user.id, "f": fingerprint}, 3500)
    assert client.get(f"/reset-password/{fresh}").status_code == 200
    # the password changed another way: every reset link made before dies
    client.post(
        "/account/password",
        data={"current_password": TEST_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert client.get(link).status_code == 400
    assert client.get(f"/reset-password/{fresh}").status_code == 400


def test_reset_form_needs_its_csrf_token(app, client, auth, sandbox, mail_sink, monkeypatch):
    auth.signup(email="csrf@example.com")
    auth.logout()
    _forgot(client, "csrf@example.com")
    link = mail_sink.link(mail_sink.wait_for(to="csrf@example.com", kind="password_reset"), "/reset-password/")
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    refused = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 400
    token = csrf_token_from(client.get(link).get_data(as_text=True))
    done = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token})
    assert done.status_code == 302


def test_forgot_password_is_rate_limited(app, client, auth, sandbox, mail_sink, monkeypatch):
    monkeypatch.setitem(app.config, "PASSWORD_RESET_LIMIT_PER_ACCOUNT", "2 per hour")
    monkeypatch.setitem(app.config, "PASSWORD_RESET_LIMIT_PER_IP", "4 per hour")
    auth.signup(email="flood@example.com")
    auth.logout()
    for _ in range(3):  # the third gets the same answer, and no mail
        assert _forgot(client, "flood@example.com").status_code == 302
    assert _forgot(client, "other@example.com").status_code == 302
    response = _forgot(client, "flood@example.com")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    settle()
    assert len(_outbox(app, "password_reset")) == 2
    other_ip = _forgot(client, "flood@example.com", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other_ip.status_code == 302
    settle()
    assert len(_outbox(app, "password_reset")) == 2  # the address's own cap holds from anywhere


def test_forgot_password_with_the_queue_down_is_sent_by_the_sweeper(app, client, auth, sandbox, mail_sink):
    auth.signup(email="down@example.com")
    auth.logout()
    mail_sink.wait_for(to="down@example.com", kind="verify_email")
    settle()  # nothing running when the queue goes away
    with queue_down(app):
        assert _forgot(client, "down@example.com").status_code == 302  # the same answer
    [row] = _outbox(app, "password_reset")
    assert row.sent_at is None and row.attempts == 0
    with app.app_context():
        with unit_of_work():  # a minute later, as far as the sweeper can tell
            db.session.execute(
                update(OutboundMail)
                .where(OutboundMail.id == row.id)
                .values(created_at=row.created_at - timedelta(minutes=2))
            )
        assert mail.send_due() == 1
        db.session.remove()
    message = mail_sink.wait_for(to="down@example.com", kind="password_reset")
    assert client.get(mail_sink.link(message, "/reset-password/")).status_code == 200


# --------------------------------------------------------------------------- email change
def _change(client, new_email: str, password: str = TEST_PASSWORD):
    return client.post("/account/email", data={"new_email": new_email, "current_password": password})


def test_changing_the_email_needs_a_verified_address(app, client, auth, sandbox, mail_sink):
    auth.signup(email="unverified@example.com")
    response = _change(client, "elsewhere@example.com")
    assert response.status_code == 403 and "Verify your current email address first" in response.get_data(as_text=True)
    settle()
    assert _outbox(app, "email_change_confirm") == []


def test_email_change_confirms_at_the_new_address_and_notifies_the_old(app, client, auth, sandbox, mail_sink):
    auth.signup(email="old@example.com")
    _verify(app, client, mail_sink, "old@example.com")
    assert _change(client, "new@example.net", password="wrong-password-9").status_code == 400
    assert _change(client, "old@example.com").status_code == 400
    response = _change(client, "New@Example.net")
    assert response.status_code == 303
    assert _user(app, "old@example.com").email == "old@example.com"  # nothing changes yet

    notice = mail_sink.wait_for(to="old@example.com", kind="email_change_notice")
    assert "new@example.net" in mail_sink.text(notice)
    assert "/reset-password/" not in mail_sink.text(notice) and "/email/confirm/" not in mail_sink.text(notice)
    confirm = mail_sink.wait_for(to="new@example.net", kind="email_change_confirm")
    link = mail_sink.link(confirm, "/account/email/confirm/")

    # another browser, signed out: the link alone is enough; a GET changes nothing
    elsewhere = app.test_client()
    page = elsewhere.get(link)
    assert page.status_code == 200 and "new@example.net" in page.get_data(as_text=True)
    assert _user(app, "old@example.com").email == "old@example.com"
    done = elsewhere.post(link)
    assert done.status_code == 303
    user = _user(app, "new@example.net")
    assert user.email_verified
    # Stripe's customer has the new address too (its invoices and Checkout use it)
    assert [c.id for c in sandbox.customers(email="new@example.net")] == [user.stripe_customer_id]
    assert elsewhere.post(link).status_code == 400  # used
    auth.logout()
    assert auth.login(email="old@example.com").status_code == 401
    assert auth.login(email="new@example.net").status_code == 302


def test_email_change_refuses_an_address_of_another_account_at_request_and_at_confirm(
    app, client, auth, sandbox, mail_sink
):
    AuthActions(app.test_client()).signup(email="taken@example.com")
    auth.signup(email="mover@example.com")
    _verify(app, client, mail_sink, "mover@example.com")
    response = _change(client, "taken@example.com")
    assert response.status_code == 409 and "already exists" in response.get_data(as_text=True)

    assert _change(client, "free@example.com").status_code == 303
    link = mail_sink.link(mail_sink.wait_for(to="free@example.com", kind="email_change_confirm"), "/email/confirm/")
    AuthActions(app.test_client()).signup(email="free@example.com")  # taken before the click
    response = app.test_client().post(link)
    assert response.status_code == 400 and "already exists" in response.get_data(as_text=True)
    assert _user(app, "mover@example.com").email == "mover@example.com"


def test_email_change_link_dies_when_the_password_changes(app, client, auth, sandbox, mail_sink):
    auth.signup(email="victim@example.com")
    _verify(app, client, mail_sink, "victim@example.com")
    assert _change(client, "attacker@example.com").status_code == 303
    link = mail_sink.link(mail_sink.wait_for(to="attacker@example.com", kind="email_change_confirm"), "/email/confirm/")
    notice = mail_sink.wait_for(to="victim@example.com", kind="email_change_notice")
    assert mail_sink.link(notice, "/forgot-password")
    client.post(
        "/account/password",
        data={"current_password": TEST_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert app.test_client().post(link).status_code == 400
    assert _user(app, "victim@example.com").email == "victim@example.com"


@pytest.mark.parametrize("path", ["/reset-password/x", "/verify-email/x", "/account/email/confirm/x"])
def test_garbage_tokens_are_a_400_not_a_500(client, sandbox, path):
    assert client.get(path).status_code == 400
    assert client.post(path).status_code == (405 if path.startswith("/verify-email/") else 400)
