import threading

import pytest
from sqlalchemy import func, select

from storefront.extensions import db
from storefront.models import User, UserSession
from storefront.services import accounts
from storefront.stripe_gateway import StripeUnavailable

from .conftest import TEST_PASSWORD, csrf_token_from, found


def get_user(email):
    return db.session.scalar(select(User).where(User.email == email))


def test_signup_creates_user_and_one_stripe_customer(app, client, auth, sandbox):
    response = auth.signup(email="  New.Buyer@Example.COM ", name="New Buyer")
    assert response.status_code == 302
    with app.app_context():
        user = get_user("new.buyer@example.com")
        assert user is not None and user.stripe_customer_id
        assert user.check_password(TEST_PASSWORD)
        assert user.password_hash.startswith("scrypt:")
        assert user.created_at.tzinfo is not None
        customers = sandbox.customers(email="new.buyer@example.com")
        assert [c.id for c in customers] == [user.stripe_customer_id]
        assert customers[0].name == "New Buyer"
        assert customers[0].metadata["user_id"] == str(user.id)
    # logged in straight away
    assert "New Buyer" in client.get("/").get_data(as_text=True)


def test_signup_submitted_twice_at_once_creates_one_user_and_one_customer(app, sandbox):
    barrier = threading.Barrier(2)
    statuses = []

    def submit():
        client = app.test_client()
        barrier.wait()
        response = client.post(
            "/signup",
            data={"email": "race@example.com", "name": "Racer", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [302, 400]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        user = get_user("race@example.com")
        customers = sandbox.customers(email="race@example.com")
        assert [c.id for c in customers] == [user.stripe_customer_id]


def test_ensure_stripe_customer_concurrently_creates_one_customer(app, sandbox):
    with app.app_context():
        user = accounts.register_user("twice@example.com", "Twice", TEST_PASSWORD, create_customer=False)
        user_id = user.id
    barrier = threading.Barrier(3)
    results, errors = [], []

    def ensure():
        with app.app_context():
            try:
                u = found(db.session.get(User, user_id), "user")
                barrier.wait()
                results.append(accounts.ensure_stripe_customer(u))
            except Exception as err:  # noqa: BLE001  # pragma: no cover - reported below
                errors.append(err)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=ensure) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(set(results)) == 1
    assert [c.id for c in sandbox.customers(email="twice@example.com")] == results[:1]


@pytest.mark.parametrize("mode", ["error", "rate_limit", "timeout"])
def test_signup_with_stripe_down_still_creates_account_and_customer_comes_later(app, client, auth, sandbox, mode):
    sandbox.fault(mode, count=1, path_prefix="/v1/customers")
    with app.app_context():
        app.config["STRIPE_TIMEOUT"]  # the client timeout is 5 s in tests
    response = auth.signup(email="down@example.com")
    assert response.status_code == 302  # the buyer is signed up and logged in anyway
    with app.app_context():
        user = get_user("down@example.com")
        assert user is not None and user.stripe_customer_id is None
    assert sandbox.customers(email="down@example.com") == [] or mode == "timeout"
    # First need: the buy page makes sure the customer exists.
    response = client.post("/buy/points_small")
    assert response.status_code in (200, 404)  # catalog not loaded in this test: 404 is fine
    with app.app_context():
        user = get_user("down@example.com")
        if response.status_code == 404:
            accounts.ensure_stripe_customer(user)
            user = get_user("down@example.com")
        assert user.stripe_customer_id
        customers = sandbox.customers(email="down@example.com")
        assert [c.id for c in customers] == [user.stripe_customer_id]


def test_ensure_stripe_customer_raises_friendly_error_while_stripe_is_down(app, sandbox):
    with app.app_context():
        user = accounts.register_user("later@example.com", "Later", TEST_PASSWORD, create_customer=False)
        sandbox.fault("error", count=1, path_prefix="/v1/customers")
        with pytest.raises(StripeUnavailable) as info:
            accounts.ensure_stripe_customer(user)
        assert "try again" in info.value.user_message
        assert get_user("later@example.com").stripe_customer_id is None
        customer_id = accounts.ensure_stripe_customer(user)
        assert customer_id.startswith("cus_")
        assert accounts.ensure_stripe_customer(user) == customer_id  # no second call, same id
    assert len(sandbox.customers(email="later@example.com")) == 1


def test_buy_page_is_where_a_deferred_customer_appears(app, client, auth, sandbox, catalog):
    sandbox.fault("error", count=1, path_prefix="/v1/customers")
    auth.signup(email="deferred@example.com")
    assert sandbox.customers(email="deferred@example.com") == []
    response = client.post("/buy/points_small")
    assert response.status_code == 303  # on to the pay page
    customers = sandbox.customers(email="deferred@example.com")
    assert len(customers) == 1
    with app.app_context():
        assert get_user("deferred@example.com").stripe_customer_id == customers[0].id


def test_buy_while_stripe_is_down_shows_friendly_503(app, client, auth, sandbox, catalog):
    sandbox.fault("error", count=1, path_prefix="/v1/customers")
    auth.signup(email="still-down@example.com")
    sandbox.fault("error", count=1, path_prefix="/v1/customers")
    response = client.post("/buy/points_small")
    assert response.status_code == 503
    assert "not responding" in response.get_data(as_text=True)


def test_duplicate_email_is_refused(app, client, auth, sandbox):
    auth.signup(email="dup@example.com")
    client.post("/logout")
    response = auth.signup(email="DUP@example.com ")
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert len(sandbox.customers(email="dup@example.com")) == 1


@pytest.mark.parametrize(
    "password,message",
    [
        ("short1!", "at least 10 characters"),
        ("12345678901234", "only digits"),
        ("aaaaaaaaaaaa", "different characters"),
        ("password123", "too common"),
    ],
)
def test_weak_password_is_refused(app, auth, sandbox, password, message):
    response = auth.signup(email="weak@example.com", password=password)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert get_user("weak@example.com") is None


def test_mismatched_confirmation_is_refused(auth, sandbox):
    response = auth.signup(confirm="something-else-entirely")
    assert response.status_code == 400
    assert "don&#39;t match" in response.get_data(as_text=True)


def test_invalid_email_is_refused(auth, sandbox):
    response = auth.signup(email="not-an-email")
    assert response.status_code == 400
    assert "valid email" in response.get_data(as_text=True)


@pytest.fixture
def csrf_on(app, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_signup_without_valid_csrf_token_is_refused(app, client, sandbox, csrf_on, token):
    client.get("/signup")
    data = {"email": "csrf@example.com", "name": "C", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD}
    if token:
        data["csrf_token"] = token
    response = client.post("/signup", data=data)
    assert response.status_code == 400
    assert "Your form expired or was sent from another site" in response.get_data(as_text=True)
    with app.app_context():
        assert get_user("csrf@example.com") is None
    assert sandbox.customers(email="csrf@example.com") == []


def test_signup_with_valid_csrf_token_works(app, client, sandbox, csrf_on):
    token = csrf_token_from(client.get("/signup").get_data(as_text=True))
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "ok@example.com",
            "name": "Ok",
            "password": TEST_PASSWORD,
            "confirm": TEST_PASSWORD,
        },
    )
    assert response.status_code == 302


def test_logout_requires_post_with_csrf(app, client, auth, sandbox, csrf_on):
    token = csrf_token_from(client.get("/signup").get_data(as_text=True))
    client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "out@example.com",
            "name": "Out",
            "password": TEST_PASSWORD,
            "confirm": TEST_PASSWORD,
        },
    )
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no token: still logged in
    assert "Out" in client.get("/account/").get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert client.get("/account/").status_code == 302  # back to login


def test_login_and_logout(app, client, auth, sandbox):
    auth.signup(email="in@example.com", name="Ina")
    auth.logout()
    assert client.get("/account/").status_code == 302
    response = auth.login(email="IN@example.com")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Ina" in client.get("/account/").get_data(as_text=True)


def test_wrong_password_is_refused(auth, sandbox):
    auth.signup(email="in@example.com")
    auth.logout()
    response = auth.login(email="in@example.com", password="wrong-password-123")
    assert response.status_code == 401
    assert "don&#39;t match an account" in response.get_data(as_text=True)


@pytest.mark.parametrize("target", ["/account/", "/test-cards?x=1"])
def test_login_follows_safe_next(client, auth, sandbox, target):
    auth.signup(email="next@example.com")
    auth.logout()
    response = client.post(f"/login?next={target}", data={"email": "next@example.com", "password": TEST_PASSWORD})
    assert response.headers["Location"] == target


@pytest.mark.parametrize(
    "target",
    ["//evil.com", "https://evil.com", "http://evil.com/x", "/\\evil.com", "javascript:alert(1)", "///evil.com"],
)
def test_login_refuses_offsite_next(client, auth, sandbox, target):
    auth.signup(email="next@example.com")
    auth.logout()
    response = client.post(
        "/login", query_string={"next": target}, data={"email": "next@example.com", "password": TEST_PASSWORD}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "outside this site" in client.get("/").get_data(as_text=True)


def test_signup_refuses_offsite_next(client, sandbox):
    response = client.post(
        "/signup?next=//evil.com",
        data={"email": "n2@example.com", "name": "N", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD},
    )
    assert response.headers["Location"] == "/"


def test_login_required_redirects_with_next(client, sandbox):
    response = client.get("/account/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


IP_A = {"REMOTE_ADDR": "10.0.0.1"}
IP_B = {"REMOTE_ADDR": "10.0.0.2"}


def test_login_is_throttled_per_account_and_ip_so_nobody_can_lock_the_owner_out(app, client, auth, sandbox):
    auth.signup(email="victim@example.com")
    auth.logout()
    attacker = app.test_client()
    for _ in range(5):
        response = attacker.post(
            "/login", data={"email": "victim@example.com", "password": "wrong-password-1"}, environ_base=IP_A
        )
        assert response.status_code == 401
    response = attacker.post(
        "/login", data={"email": "victim@example.com", "password": TEST_PASSWORD}, environ_base=IP_A
    )  # from the attacker's IP even the right one waits
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    # the promised way out exists: the forgot-password page (tests/test_mail_accounts.py)
    assert "Too many login attempts" in page and "reset your password" in page and 'href="/forgot-password"' in page
    assert int(response.headers["Retry-After"]) > 0
    # the owner, elsewhere, logs in
    owner = app.test_client()
    response = owner.post("/login", data={"email": "victim@example.com", "password": TEST_PASSWORD}, environ_base=IP_B)
    assert response.status_code == 302


@pytest.mark.parametrize("ceiling,expected", [("6 per hour", 429), ("none", 302)])
def test_login_has_a_per_account_ceiling_across_ips(app, auth, sandbox, monkeypatch, ceiling, expected):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL", ceiling)
    auth.signup(email="target@example.com")
    auth.logout()
    for i in range(6):  # 3 IPs, 2 failures each: under the per-(account, IP) limit
        response = app.test_client().post(
            "/login",
            data={"email": "target@example.com", "password": "wrong-password-1"},
            environ_base={"REMOTE_ADDR": f"10.0.1.{i // 2}"},
        )
        assert response.status_code == 401
    response = app.test_client().post(
        "/login",
        data={"email": "target@example.com", "password": TEST_PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.2.1"},
    )
    assert response.status_code == expected


def test_login_is_throttled_per_ip(app, client, sandbox, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_IP", "3 per minute")
    for i in range(3):
        assert client.post("/login", data={"email": f"u{i}@example.com", "password": "x" * 12}).status_code == 401
    response = client.post("/login", data={"email": "u9@example.com", "password": "x" * 12})
    assert response.status_code == 429
    other_ip = client.post(
        "/login", data={"email": "u9@example.com", "password": "x" * 12}, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert other_ip.status_code == 401


def test_change_password(app, client, auth, sandbox):
    auth.signup(email="pw@example.com")
    response = client.post(
        "/account/password",
        data={"current_password": "not-my-password", "password": "a-brand-new-pass", "confirm": "a-brand-new-pass"},
    )
    assert response.status_code == 400
    assert "current password is not correct" in response.get_data(as_text=True)
    response = client.post(
        "/account/password",
        data={"current_password": TEST_PASSWORD, "password": "1234567890123", "confirm": "1234567890123"},
    )
    assert response.status_code == 400 and "only digits" in response.get_data(as_text=True)
    response = client.post(
        "/account/password",
        data={"current_password": TEST_PASSWORD, "password": "a-brand-new-pass", "confirm": "a-brand-new-pass"},
    )
    assert response.status_code == 302
    auth.logout()
    assert auth.login(email="pw@example.com").status_code == 401
    assert auth.login(email="pw@example.com", password="a-brand-new-pass").status_code == 302


# --------------------------------------------------------------------------- sign-up throttle
def test_signup_is_throttled_per_ip_and_a_flood_creates_nothing(app, sandbox, monkeypatch):
    assert app.config["SIGNUP_LIMIT_PER_IP"] == "10 per hour"  # the default
    monkeypatch.setitem(app.config, "SIGNUP_LIMIT_PER_IP", "3 per hour")

    def signup(i, environ=IP_A):
        return app.test_client().post(
            "/signup",
            environ_base=environ,
            data={
                "email": f"flood{i}@example.com",
                "name": "Flood",
                "password": TEST_PASSWORD,
                "confirm": TEST_PASSWORD,
            },
        )

    assert [signup(i).status_code for i in range(3)] == [302, 302, 302]
    for i in range(3, 6):
        response = signup(i)
        assert response.status_code == 429
        assert "Too many accounts were created from your network" in response.get_data(as_text=True)
        assert int(response.headers["Retry-After"]) > 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 3
    assert len(sandbox.customers()) == 3  # the throttled requests made no Stripe customer
    assert signup(9, IP_B).status_code == 302  # another network is not affected


# --------------------------------------------------------------------------- control characters
@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "Bea\u202eyub"),  # right-to-left override
        ("name", "Bea\u2066Buyer\u2069"),  # bidi isolates
        ("name", "Bea\x00Buyer"),  # NUL
        ("name", "Bea\nBuyer"),
        ("name", "Bea\u200bBuyer"),  # zero-width space
        ("email", "bea\u200b@example.com"),
        ("email", "bea\u202e@example.com"),
    ],
)
def test_control_characters_in_names_and_emails_are_refused(app, auth, sandbox, field, value):
    data = {"email": "ctl@example.com", "name": "Bea Buyer", field: value}
    response = auth.signup(**data)
    assert response.status_code == 400
    # a NUL is refused before any view (no form of ours takes one; PostgreSQL can't store it)
    expected = "NUL character" if "\x00" in value else "invisible or control character"
    assert expected in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
    assert sandbox.customers() == []


def test_a_name_with_a_zero_width_non_joiner_is_accepted(app, auth, sandbox):
    assert auth.signup(email="mehr@example.com", name="Mehr\u200cnaz").status_code == 302


def test_login_refuses_control_characters_in_the_email(app, client, sandbox):
    response = client.post("/login", data={"email": "a\u202e@example.com", "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert "invisible or control character" in response.get_data(as_text=True)
    response = client.post("/login", data={"email": "a\x00@example.com", "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)


# --------------------------------------------------------------------------- sessions end
def _cookie(client, name):
    cookie = client.get_cookie(name)
    return cookie.value if cookie is not None else None


def _replay(app, session=None, remember=None):
    """A fresh browser holding only the given cookie values (a stolen copy)."""
    other = app.test_client()
    if session:
        other.set_cookie("session", session)
    if remember:
        other.set_cookie("remember_token", remember)
    return other


def _signed_in(client) -> bool:
    return client.get("/account/").status_code == 200


def _device(app, email, *, remember=True):
    """A browser that signed in through the form; (client, its session, its remember cookie)."""
    device = app.test_client()
    data = {"email": email, "password": TEST_PASSWORD, **({"remember": "y"} if remember else {})}
    assert device.post("/login", data=data).status_code == 302
    return device, _cookie(device, "session"), _cookie(device, "remember_token")


def _sign_ins(app, email) -> int:
    with app.app_context():
        user = get_user(email)
        assert user is not None
        return db.session.scalars(select(func.count(UserSession.id)).where(UserSession.user_id == user.id)).one()


def test_logout_ends_the_session_and_its_remember_cookie(app, client, auth, sandbox):
    auth.signup(email="leave@example.com")
    auth.logout()
    response = client.post("/login", data={"email": "leave@example.com", "password": TEST_PASSWORD, "remember": "y"})
    assert response.status_code == 302
    session_cookie, remember_cookie = _cookie(client, "session"), _cookie(client, "remember_token")
    assert session_cookie and remember_cookie
    # copies work while the session lasts (the replay is a fair test) ...
    assert _signed_in(_replay(app, session=session_cookie))
    assert _signed_in(_replay(app, remember=remember_cookie))
    auth.logout()
    assert not _signed_in(client)
    # ... and are dead after log-out
    assert not _signed_in(_replay(app, session=session_cookie))
    assert not _signed_in(_replay(app, remember=remember_cookie))
    assert not _signed_in(_replay(app, session=session_cookie, remember=remember_cookie))


def test_remember_cookie_lasts_30_days_and_sign_in_stamps_are_checked(app, client, auth, sandbox):
    import time
    from datetime import timedelta

    from flask_login.utils import encode_cookie

    from storefront.models import utcnow

    auth.signup(email="stamp@example.com")
    auth.logout()
    response = client.post("/login", data={"email": "stamp@example.com", "password": TEST_PASSWORD, "remember": "y"})
    set_cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("remember_token="))
    expires = client.get_cookie("remember_token").expires
    assert 29 * 86400 < expires.timestamp() - time.time() <= 30 * 86400 + 60, set_cookie
    with app.app_context():
        user = get_user("stamp@example.com")
        token = db.session.scalar(select(UserSession.token).where(UserSession.user_id == user.id))
        stale = f"{user.id}:{token}:{int(time.time()) - 31 * 86400}"
        fresh = f"{user.id}:{token}:{int(time.time())}"
        wrong = f"{user.id}:{'x' * 32}:{int(time.time())}"
        old_style = str(user.id)  # what the remember cookie held before session tokens
        with app.test_request_context():
            cookies = {
                name: encode_cookie(value)
                for name, value in [("stale", stale), ("fresh", fresh), ("wrong", wrong), ("old", old_style)]
            }
    assert _signed_in(_replay(app, remember=cookies["fresh"]))  # the forging is right ...
    for name in ("stale", "wrong", "old"):  # ... and only a current, in-date stamp signs in
        assert not _signed_in(_replay(app, remember=cookies[name])), name
    # the server caps the sign-in itself too: a row older than 30 days ends it, whatever the stamp
    with app.app_context():
        db.session.execute(db.update(UserSession).values(created_at=utcnow() - timedelta(days=30, minutes=1)))
        db.session.commit()
    assert not _signed_in(_replay(app, remember=cookies["fresh"]))
    assert not _signed_in(client)


def test_logout_on_one_device_leaves_the_others_signed_in(app, auth, sandbox):
    auth.signup(email="many@example.com")
    auth.logout()
    device_a, a_session, a_remember = _device(app, "many@example.com")
    device_b, b_session, b_remember = _device(app, "many@example.com")
    assert a_session and a_remember and b_session and b_remember
    assert _sign_ins(app, "many@example.com") == 2
    response = device_a.post("/logout", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "You have been logged out." in page and "every device" not in page
    assert device_a.get_cookie("remember_token") is None  # the browser is told to drop it
    assert not _signed_in(device_a)
    # A's cookies are dead, copies included ...
    assert not _signed_in(_replay(app, session=a_session))
    assert not _signed_in(_replay(app, remember=a_remember))
    assert not _signed_in(_replay(app, session=a_session, remember=a_remember))
    # ... and B carries on, with its session and with its remember-me cookie alone
    assert _signed_in(device_b)
    assert _signed_in(_replay(app, session=b_session))
    assert _signed_in(_replay(app, remember=b_remember))
    assert _sign_ins(app, "many@example.com") == 1


def test_a_sign_in_records_the_browser_and_prunes_expired_rows(app, auth, sandbox):
    from datetime import timedelta

    from storefront.models import utcnow

    auth.signup(email="agent@example.com")
    with app.app_context():
        db.session.execute(db.update(UserSession).values(created_at=utcnow() - timedelta(days=31)))
        db.session.commit()
    device = app.test_client()
    assert (
        device.post(
            "/login",
            data={"email": "agent@example.com", "password": TEST_PASSWORD},
            headers={"User-Agent": "Firefox\x00/" + "x" * 300},
        ).status_code
        == 302
    )
    with app.app_context():
        rows = db.session.scalars(select(UserSession)).all()
    assert len(rows) == 1  # the expired sign-in went
    assert rows[0].user_agent == ("Firefox/" + "x" * 300)[:200]


def test_password_change_ends_every_other_session_and_keeps_this_one(app, auth, sandbox):
    auth.signup(email="two@example.com")
    device_a, a_session, a_remember = _device(app, "two@example.com")
    device_b, b_session, b_remember = _device(app, "two@example.com")
    response = device_a.post(
        "/account/password",
        data={"current_password": TEST_PASSWORD, "password": "a-brand-new-pass", "confirm": "a-brand-new-pass"},
    )
    assert response.status_code == 302
    assert "Every other device has been signed out" in device_a.get("/account/").get_data(as_text=True)
    assert _signed_in(device_a)
    assert _signed_in(_replay(app, remember=_cookie(device_a, "remember_token")))  # renewed for A
    assert not _signed_in(device_b)
    assert not _signed_in(_replay(app, session=b_session))
    assert not _signed_in(_replay(app, remember=b_remember))
    # A carries on with a new sign-in: a stolen copy of A's cookies from before dies too
    assert not _signed_in(_replay(app, session=a_session))
    assert not _signed_in(_replay(app, remember=a_remember))
    assert _sign_ins(app, "two@example.com") == 1


def test_an_admin_ends_a_buyers_sessions(app, auth, client, sandbox):
    from .test_admin import ADMIN_EMAIL

    with app.app_context():
        accounts.create_or_promote_admin(ADMIN_EMAIL, TEST_PASSWORD, "Ada Admin")
    admin = app.test_client()
    assert admin.post("/login", data={"email": ADMIN_EMAIL, "password": TEST_PASSWORD}).status_code == 302
    auth.signup(email="lost-laptop@example.com")
    client.post("/logout")
    client.post("/login", data={"email": "lost-laptop@example.com", "password": TEST_PASSWORD, "remember": "y"})
    remember_cookie = _cookie(client, "remember_token")
    phone, phone_session, phone_remember = _device(app, "lost-laptop@example.com")
    assert _signed_in(client) and _signed_in(phone)
    with app.app_context():
        public_id = get_user("lost-laptop@example.com").public_id
    page = admin.get(f"/admin/buyers/{public_id}").get_data(as_text=True)
    assert f"/admin/buyers/{public_id}/sessions/end" in page
    assert client.post(f"/admin/buyers/{public_id}/sessions/end").status_code == 403  # buyers can't
    response = admin.post(f"/admin/buyers/{public_id}/sessions/end", follow_redirects=True)
    assert response.status_code == 200
    assert "signed out on every device" in response.get_data(as_text=True)
    assert not _signed_in(client)
    assert not _signed_in(_replay(app, remember=remember_cookie))
    assert not _signed_in(phone)
    assert not _signed_in(_replay(app, session=phone_session))
    assert not _signed_in(_replay(app, remember=phone_remember))
    assert _sign_ins(app, "lost-laptop@example.com") == 0
    assert admin.get("/admin/").status_code == 200  # the admin's own session is untouched
    assert (
        client.post("/login", data={"email": "lost-laptop@example.com", "password": TEST_PASSWORD}).status_code == 302
    )


def test_login_renews_the_csrf_secret(app, client, auth, sandbox, csrf_on):
    token = csrf_token_from(client.get("/signup").get_data(as_text=True))
    client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "csrf2@example.com",
            "name": "C",
            "password": TEST_PASSWORD,
            "confirm": TEST_PASSWORD,
        },
    )
    assert _signed_in(client)
    # the token of the anonymous page no longer works for the signed-in session
    assert client.post("/logout", data={"csrf_token": token}).status_code == 400
    assert _signed_in(client)
    fresh = csrf_token_from(client.get("/").get_data(as_text=True))
    assert fresh != token
    assert client.post("/logout", data={"csrf_token": fresh}).status_code == 302
    assert not _signed_in(client)


def test_the_status_fast_path_ends_with_the_session_too(app, client, auth, sandbox, catalog):
    auth.signup(email="poll@example.com")
    response = client.post("/buy/points_small")
    assert response.status_code == 303
    status_url = response.headers["Location"].rsplit("/", 1)[0] + "/status"
    old_session = _cookie(client, "session")
    assert client.get(status_url).status_code == 200
    assert _replay(app, session=old_session).get(status_url).status_code == 200
    auth.logout()
    assert _replay(app, session=old_session).get(status_url).status_code in (302, 401)


def test_create_admin_command_refuses_control_characters_in_the_name(app, runner, sandbox):
    result = runner.invoke(
        args=["create-admin", "boss2@example.com", "--password", "a-strong-admin-pass", "--name", "Boss\u202eevil"]
    )
    assert result.exit_code != 0 and "invisible or control characters (U+202E)" in result.output
    with app.app_context():
        assert get_user("boss2@example.com") is None


def test_a_session_cookie_not_written_for_12_hours_is_refused(app, client, auth, sandbox):
    import time

    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import TimestampSigner

    auth.signup(email="idle@example.com")
    serializer = found(SecureCookieSessionInterface().get_signing_serializer(app), "session serializer")
    data = serializer.loads(_cookie(client, "session"))
    assert app.permanent_session_lifetime.total_seconds() == 12 * 3600

    def signed(age_seconds):
        class Then(TimestampSigner):
            def get_timestamp(self):
                return int(time.time()) - age_seconds

        serializer.signer = Then
        return serializer.dumps(data)

    assert _signed_in(_replay(app, session=signed(11 * 3600)))
    assert not _signed_in(_replay(app, session=signed(12 * 3600 + 60)))
