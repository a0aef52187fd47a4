"""The JSON API as a separate front end on another origin sees it (issue 14, the platform part):
CORS for ``API_CORS_ORIGINS`` on ``/api/`` only, one rate limit for the whole API per client IP
(with ``Retry-After`` and CORS headers on the 429; shared by worker processes through Redis),
trusted proxies, CSRF only where our cookie is, ``GET /api/prices`` (ETag/304) and
check-payment-status in the seed's seven statuses.

Over HTTP through the app's WSGI stack (Flask's test client, with the headers a browser sends);
the "across workers" tests run the store in separate processes against a real Redis
(``TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/14``; skipped without one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from sqlalchemy import select

from storefront import ConfigError, create_app
from storefront.config import ENV_NAMES, load_settings
from storefront.extensions import db, limiter
from storefront.models import Order, Price
from storefront.models.base import utcnow
from storefront.models.order import STATUSES
from storefront.web.api import API_STATUS, SEED_STATUSES
from storefront.web.cors import origin_allowed

from .conftest import csrf_token_from, found, make_config
from .factories import make_user, price_of

FRONT_END = "http://127.0.0.1:5173"
OTHER_FRONT_END = "https://app.example.com"
EVIL = "https://evil.example"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
ACAO = "Access-Control-Allow-Origin"


@pytest.fixture
def cors_app(app, monkeypatch):
    """The session app with two front ends allowed (read at request time)."""
    monkeypatch.setitem(app.config, "API_CORS_ORIGINS", (FRONT_END, OTHER_FRONT_END))
    return app


def _price_id(app, lookup_key: str = "points_small") -> str:
    with app.app_context():
        return found(db.session.scalar(select(Price.stripe_price_id).where(Price.lookup_key == lookup_key)))


def _no_credentials(response) -> None:
    assert "Access-Control-Allow-Credentials" not in response.headers


# --------------------------------------------------------------------------- settings
def _settings(tmp_path, environ: dict | None = None, **overrides):
    return load_settings(environ or {}, str(tmp_path), overrides=overrides)


@pytest.mark.parametrize(
    "value, origins",
    [
        ("", ()),
        ("https://App.Example.com", ("https://app.example.com",)),
        ("https://app.example.com:443/, http://localhost:5173", ("https://app.example.com", "http://localhost:5173")),
        (["http://[::1]:3000", "http://[::1]:3000"], ("http://[::1]:3000",)),
    ],
)
def test_api_cors_origins_are_kept_as_browsers_serialize_them(tmp_path, value, origins):
    assert _settings(tmp_path, API_CORS_ORIGINS=value)["API_CORS_ORIGINS"] == origins


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "null",
        "app.example.com",
        "https://app.example.com/shop",
        "ftp://app.example.com",
        "https://u:p@app.example.com",
    ],
)
def test_what_is_not_an_origin_is_refused_at_start(tmp_path, value):
    with pytest.raises(ConfigError, match="API_CORS_ORIGINS"):
        _settings(tmp_path, {"API_CORS_ORIGINS": value})


def test_settings_from_the_environment(tmp_path):
    settings = _settings(tmp_path, {"API_CORS_ORIGINS": f"{FRONT_END},{OTHER_FRONT_END}", "TRUSTED_PROXY_COUNT": "2"})
    assert settings["API_CORS_ORIGINS"] == (FRONT_END, OTHER_FRONT_END)
    assert settings["TRUSTED_PROXY_COUNT"] == 2
    assert settings["API_RATE_LIMIT"] == "100 per minute"
    for bad in ("-1", "many", "9"):
        with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT"):
            _settings(tmp_path, {"TRUSTED_PROXY_COUNT": bad})
    with pytest.raises(ConfigError, match="API_RATE_LIMIT"):
        _settings(tmp_path, {"API_RATE_LIMIT": "lots"})


def test_the_limiter_counts_in_redis_when_one_is_configured(tmp_path):
    assert _settings(tmp_path)["RATELIMIT_STORAGE_URI"] == "memory://"
    shared = _settings(tmp_path, {"REDIS_URL": "redis://queue:6379/0"})
    assert shared["RATELIMIT_STORAGE_URI"] == "redis://queue:6379/0"
    assert shared["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True  # Redis down: count in memory, don't fail
    assert shared["RATELIMIT_STORAGE_OPTIONS"]["socket_timeout"] == 1
    own = _settings(tmp_path, {"REDIS_URL": "redis://queue:6379/0", "RATELIMIT_STORAGE_URI": "redis://limits:6379/3"})
    assert own["RATELIMIT_STORAGE_URI"] == "redis://limits:6379/3"


def test_live_mode_wants_https_front_ends():
    from storefront import api_settings

    assert api_settings.parse_origins("https://app.example.com", live=True) == ("https://app.example.com",)
    with pytest.raises(ValueError, match="https"):
        api_settings.parse_origins("http://app.example.com", live=True)


def test_origin_allowed_reads_the_origin_of_a_url(cors_app):
    with cors_app.test_request_context():
        assert origin_allowed("http://127.0.0.1:5173/thanks?x=1")
        assert origin_allowed("HTTPS://APP.EXAMPLE.COM:443/done")
        for url in (
            "http://127.0.0.1:5174/",
            "https://app.example.com.evil.example/",
            "/relative",
            "javascript:x",
            None,
        ):
            assert not origin_allowed(url)


# --------------------------------------------------------------------------- CORS
def test_a_listed_origin_reads_the_api(cors_app, client, catalog):
    response = client.get("/api/prices", headers={"Origin": FRONT_END})
    assert response.status_code == 200
    assert response.headers[ACAO] == FRONT_END
    assert "Origin" in response.vary
    assert {"Retry-After", "ETag"} <= {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    _no_credentials(response)
    assert client.get("/api/prices", headers={"Origin": OTHER_FRONT_END}).headers[ACAO] == OTHER_FRONT_END


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:5174", "HTTP://127.0.0.1:5173", FRONT_END + "/"])
def test_any_other_origin_gets_no_cors_header(cors_app, client, catalog, origin):
    response = client.get("/api/prices", headers={"Origin": origin})
    assert response.status_code == 200  # CORS is not access control: the browser just can't read it
    assert ACAO not in response.headers and "Access-Control-Expose-Headers" not in response.headers
    assert "Origin" in response.vary  # a shared cache keeps one answer per origin
    _no_credentials(response)


def test_no_origin_no_cors_header_and_none_by_default(app, client, catalog):
    assert app.config["API_CORS_ORIGINS"] == ()
    assert ACAO not in client.get("/api/prices").headers
    assert ACAO not in client.get("/api/prices", headers={"Origin": FRONT_END}).headers


@pytest.mark.parametrize("path", ["/", "/login", "/orders/", "/healthz", "/api/stripe/webhook"])
def test_no_cors_outside_the_api(cors_app, client, catalog, path):
    for method in ("GET", "OPTIONS"):
        response = client.open(
            path, method=method, headers={"Origin": FRONT_END, "Access-Control-Request-Method": "POST"}
        )
        assert not [h for h, _value in response.headers.items() if h.lower().startswith("access-control-")], (
            path,
            method,
        )


def test_preflight_for_the_seed_clients_post(cors_app, client, catalog):
    response = client.options(
        "/api/create-checkout-session",
        headers={
            "Origin": FRONT_END,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers[ACAO] == FRONT_END
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    _no_credentials(response)


def test_preflight_refused_for_other_origins_and_methods(cors_app, client, catalog):
    evil = client.options(
        "/api/create-checkout-session", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert ACAO not in evil.headers and "Access-Control-Allow-Methods" not in evil.headers
    delete = client.options(
        "/api/create-checkout-session", headers={"Origin": FRONT_END, "Access-Control-Request-Method": "DELETE"}
    )
    assert "Access-Control-Allow-Methods" not in delete.headers  # the browser refuses to send it


def test_errors_carry_cors_headers(cors_app, client, catalog):
    """A front end reads the API's errors: 404 (unknown session, unknown path), 405, 400."""
    answers = [
        client.get("/api/check-payment-status/cs_test_nope", headers={"Origin": FRONT_END}),
        client.get("/api/nothing-here", headers={"Origin": FRONT_END}),
        client.delete("/api/prices", headers={"Origin": FRONT_END}),
        client.post("/api/create-checkout-session", json={"priceId": "nope"}, headers={"Origin": FRONT_END}),
    ]
    assert [r.status_code for r in answers][:3] == [404, 404, 405]
    assert answers[3].status_code in (400, 401)  # 401 until guest checkout (helper G) is in
    for response in answers:
        assert response.headers[ACAO] == FRONT_END
        assert set(response.get_json()["error"]) == {"code", "message", "type"}
        _no_credentials(response)
    assert answers[0].get_json()["error"]["code"] == "session_not_found"


# --------------------------------------------------------------------------- CSRF
def test_csrf_is_needed_only_where_our_cookie_is(app, client, auth, catalog, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    body = {"priceId": _price_id(app)}
    # no cookie (a separate front end's fetch): no token needed
    cookieless = app.test_client(use_cookies=False).post("/api/create-checkout-session", json=body)
    assert cookieless.get_json().get("error", {}).get("code") != "csrf_failed"
    # signed in with our cookie: the token is needed, as on a form
    token = csrf_token_from(client.get("/signup").get_data(as_text=True))
    assert client.post("/signup", data=_signup(token)).status_code == 302
    refused = client.post("/api/create-checkout-session", json=body)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf_failed"
    forged = client.post("/api/create-checkout-session", json=body, headers={"X-CSRFToken": "forged"})
    assert forged.get_json()["error"]["code"] == "csrf_failed"
    token = csrf_token_from(client.get("/account/").get_data(as_text=True))
    accepted = client.post("/api/create-checkout-session", json=body, headers={"X-CSRFToken": token})
    assert accepted.status_code == 200 and set(accepted.get_json()) == {"url", "sessionId"}


def test_an_anonymous_session_cookie_or_a_remember_cookie_still_needs_the_token(app, catalog, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    body = {"priceId": _price_id(app)}
    visitor = app.test_client()
    visitor.get("/signup")  # the form's token puts our session cookie in this browser
    assert visitor.get_cookie(app.config["SESSION_COOKIE_NAME"]) is not None
    assert visitor.post("/api/create-checkout-session", json=body).get_json()["error"]["code"] == "csrf_failed"
    remembered = app.test_client()
    remembered.set_cookie("remember_token", "1|whatever")
    assert remembered.post("/api/create-checkout-session", json=body).get_json()["error"]["code"] == "csrf_failed"


def _signup(token: str) -> dict:
    password = "correct-horse-battery"
    return {
        "email": "csrf-api@example.com",
        "name": "C",
        "password": password,
        "confirm": password,
        "csrf_token": token,
    }


# --------------------------------------------------------------------------- the rate limit
def _status(client, **kw):
    return client.get("/api/check-payment-status/cs_test_nope", **kw)


def test_one_limit_for_the_whole_api_with_retry_after_and_cors(cors_app, client, catalog):
    limiter.reset()
    statuses = [client.get("/api/prices", headers={"Origin": FRONT_END}).status_code for _ in range(50)]
    statuses += [_status(client, headers={"Origin": FRONT_END}).status_code for _ in range(49)]
    statuses.append(client.get("/api/config").status_code)
    assert statuses == [200] * 50 + [404] * 49 + [200]
    limited = client.post(
        "/api/create-checkout-session", json={"priceId": _price_id(cors_app)}, headers={"Origin": FRONT_END}
    )
    assert limited.status_code == 429
    assert limited.get_json() == {
        "error": {
            "code": "rate_limit_exceeded",
            "message": "Too many requests. Please slow down and try again in a minute.",
            "type": "rate_limit_error",
        }
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers[ACAO] == FRONT_END and "Retry-After" in limited.headers["Access-Control-Expose-Headers"]
    _no_credentials(limited)
    with cors_app.app_context():
        assert db.session.scalar(select(Order.id)) is None  # the refused call bought nothing


def test_preflights_are_not_counted(cors_app, client, catalog):
    limiter.reset()
    preflight = {"Origin": FRONT_END, "Access-Control-Request-Method": "POST"}
    assert {client.options("/api/create-checkout-session", headers=preflight).status_code for _ in range(120)} == {200}
    assert [_status(client).status_code for _ in range(100)] == [404] * 100
    assert _status(client).status_code == 429
    assert client.options("/api/create-checkout-session", headers=preflight).status_code == 200


def test_each_client_ip_has_its_own_budget_and_forwarded_for_is_not_believed(app, client, catalog):
    limiter.reset()
    a, b = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "203.0.113.8"}
    for i in range(100):  # a client can't buy a fresh budget by writing X-Forwarded-For
        assert _status(client, environ_base=a, headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code == 404
    assert _status(client, environ_base=a, headers={"X-Forwarded-For": "198.51.100.200"}).status_code == 429
    assert _status(client, environ_base=b).status_code == 404


def test_an_ipv6_client_counts_by_its_64(app, client, catalog):
    limiter.reset()
    for i in range(100):
        assert _status(client, environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{i + 1:x}"}).status_code == 404
    assert _status(client, environ_base={"REMOTE_ADDR": "2001:db8:1:2:ffff::1"}).status_code == 429
    assert _status(client, environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 404


def test_behind_trusted_proxies_the_client_is_the_address_the_proxy_saw(database_url, sandbox_server, sandbox):
    proxied = create_app(make_config(database_url, sandbox_server.url, TRUSTED_PROXY_COUNT=1))
    seen: dict = {}

    @proxied.get("/_test/who")
    def who():
        from flask import request

        seen.update(addr=request.remote_addr, scheme=request.scheme)
        return "ok"

    client = proxied.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}  # every request comes from the proxy's own address
    client.get(
        "/_test/who",
        environ_base=proxy,
        headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9", "X-Forwarded-Proto": "https"},
    )
    assert seen == {"addr": "203.0.113.9", "scheme": "https"}
    with proxied.app_context():
        limiter.reset()
    for i in range(100):
        # what the client wrote comes first (ignored); the proxy appends the address it saw
        forwarded = {"X-Forwarded-For": f"192.0.2.{i}, 203.0.113.9"}
        assert _status(client, environ_base=proxy, headers=forwarded).status_code == 404
    assert _status(client, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 429
    assert _status(client, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.10"}).status_code == 404
    assert _status(client, environ_base=proxy).status_code == 404  # no header: the proxy itself


def test_without_trusted_proxies_forwarded_headers_change_nothing(app, client):
    seen: dict = {}
    with app.test_request_context(
        "/", environ_base={"REMOTE_ADDR": "203.0.113.5"}, headers={"X-Forwarded-For": "1.2.3.4"}
    ):
        from flask import request

        seen.update(addr=request.remote_addr)
    assert app.config["TRUSTED_PROXY_COUNT"] == 0
    assert seen == {"addr": "203.0.113.5"}
    assert "ProxyFix" not in type(app.wsgi_app).__name__


# --------------------------------------------------------------------------- across worker processes (Redis)
WORKER = textwrap.dedent(
    """
    import json, sys
    from storefront import create_app
    from storefront.extensions import db
    redis_url, count, addr, instance, method, path = sys.argv[1:7]
    app = create_app({"TESTING": True, "SECRET_KEY": "%s", "WTF_CSRF_ENABLED": False,
                      "SQLALCHEMY_DATABASE_URI": "sqlite:///" + instance + "/store.sqlite3",
                      "INSTANCE_PATH": instance, "QUEUE_SQLITE_PATH": instance + "/queue.sqlite3",
                      "RATELIMIT_STORAGE_URI": redis_url, "API_RATE_LIMIT": "100 per minute"})
    with app.app_context():
        db.create_all()
    client = app.test_client()
    form = {"email": "nobody@example.com", "password": "not-the-password"} if method == "POST" else None
    answers = [client.open(path, method=method, data=form, environ_base={"REMOTE_ADDR": addr})
               for _ in range(int(count))]
    print(json.dumps([[r.status_code, r.headers.get("Retry-After")] for r in answers]))
    """
)


def _worker(tmp_path, redis_url: str, count: int, addr: str, method: str = "GET", path: str = "/api/config") -> list:
    """``count`` requests to a store running in a process of its own (a gunicorn worker's view)."""
    from .conftest import TEST_SECRET_KEY

    done = subprocess.run(
        [sys.executable, "-c", WORKER % TEST_SECRET_KEY, redis_url, str(count), addr, str(tmp_path), method, path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={name: value for name, value in os.environ.items() if name not in ENV_NAMES},  # the script's settings only
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def redis_db():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.skip(f"no Redis at {TEST_REDIS_URL} ({err}): the cross-process limit needs one")
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()


def test_worker_processes_share_the_limit_through_redis(tmp_path, redis_db):
    addr = "198.51.100.77"
    first = _worker(tmp_path, redis_db, 60, addr)
    second = _worker(tmp_path, redis_db, 41, addr)
    assert [status for status, _ in first] == [200] * 60
    assert [status for status, _ in second] == [200] * 40 + [429]
    assert 1 <= int(second[-1][1]) <= 60
    assert [status for status, _ in _worker(tmp_path, redis_db, 1, "198.51.100.78")] == [200]


def test_with_redis_down_the_api_and_the_log_in_still_answer(tmp_path):
    """The limiter counts in memory while its Redis is unreachable, instead of failing the call:
    the API's limit (Flask-Limiter's fallback) and the log-in throttle (``web/throttle.py``)."""
    answers = _worker(tmp_path, "redis://127.0.0.1:1/0", 3, "198.51.100.79")
    assert [status for status, _ in answers] == [200, 200, 200]
    logins = _worker(tmp_path, "redis://127.0.0.1:1/0", 6, "198.51.100.79", "POST", "/login")
    assert [status for status, _ in logins] == [401] * 5 + [429]  # LOGIN_LIMIT_PER_ACCOUNT, counted in memory


# --------------------------------------------------------------------------- GET /api/prices
def test_prices_is_the_public_catalog_a_front_end_needs(cors_app, client, catalog):
    response = client.get("/api/prices", headers={"Origin": FRONT_END})
    prices = response.get_json()["prices"]
    with cors_app.app_context():
        on_sale = {
            p.lookup_key: p
            for p in db.session.scalars(select(Price).where(Price.active.is_(True), Price.interval.is_(None)))
        }
        small = price_of("points_small")
        expected_small = {
            "priceId": small.stripe_price_id,
            "lookupKey": "points_small",
            "productName": small.product.name,
            "amount": small.unit_amount,
            "currency": small.currency,
            "interval": None,
            "points": small.product.points,
        }
    assert {p["lookupKey"] for p in prices} == set(on_sale)
    assert expected_small in prices
    for price in prices:  # every one can be bought through create-checkout-session
        assert price["priceId"].startswith("price_") and isinstance(price["amount"], int) and price["amount"] > 0


def test_prices_are_cacheable_with_an_etag(cors_app, client, catalog):
    first = client.get("/api/prices", headers={"Origin": FRONT_END})
    assert first.headers["Cache-Control"] == "public, max-age=60"
    etag = first.headers["ETag"]
    again = client.get("/api/prices", headers={"Origin": FRONT_END, "If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == etag and again.headers[ACAO] == FRONT_END
    with cors_app.app_context():
        price_of("points_small").unit_amount = 250
        db.session.commit()
    changed = client.get("/api/prices", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


# --------------------------------------------------------------------------- check-payment-status
def test_every_order_status_answers_one_of_the_seeds_seven():
    assert set(API_STATUS) == set(STATUSES)
    seven = {"paid", "unpaid", "processing", "expired", "failed", "canceled", "no_payment_required"}
    assert seven == SEED_STATUSES
    assert set(API_STATUS.values()) <= SEED_STATUSES


@pytest.mark.parametrize(
    "status, seed_status",
    [
        ("pending", "unpaid"),
        ("requires_action", "unpaid"),
        ("processing", "processing"),
        ("paid", "paid"),
        ("failed", "failed"),
        ("canceled", "canceled"),
        ("expired", "expired"),
        ("refunded", "paid"),
        ("partially_refunded", "paid"),
        ("disputed", "paid"),
    ],
)
def test_check_payment_status_for_each_order_status(cors_app, client, catalog, status, seed_status):
    session_id = f"cs_test_{status}_0123456789"
    with cors_app.app_context():
        owner = make_user(email=f"{status}@example.com")
        # synced just now: the answer comes from our order (no Stripe call is due)
        make_order_for(owner, status, session_id)
    response = app_client_without_cookies(cors_app).get(
        f"/api/check-payment-status/{session_id}", headers={"Origin": FRONT_END}
    )
    assert response.status_code == 200
    assert response.get_json() == {"status": seed_status}  # and nothing about the buyer
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers[ACAO] == FRONT_END


def make_order_for(owner, status: str, session_id: str) -> None:
    from .factories import make_order

    make_order(
        owner,
        price_of("points_small"),
        status=status,
        method="checkout",
        stripe_checkout_session_id=session_id,
        synced_at=utcnow() + timedelta(minutes=5),
    )
    db.session.commit()


def app_client_without_cookies(app):
    return app.test_client(use_cookies=False)
