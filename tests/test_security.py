"""Security headers, trusted hosts, request size limits and strict query parameters
(web/security.py, web/params.py): every hostile value gets a clear 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from storefront import create_app
from storefront.extensions import db
from storefront.models import Order, PointsEntry, Price, StripeEvent

from .conftest import TEST_PASSWORD, make_config


def directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/login", "/test-cards", "/nope", "/api/config", "/static/css/site.css", "/healthz"]
)
def test_every_response_has_the_security_headers(client, catalog, path):
    response = client.get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in response.headers  # not in sandbox mode
    policy = directives(response)
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in response.headers["Content-Security-Policy"]


def test_the_policy_fits_stripe_js_and_the_sandbox(app, client, sandbox):
    policy = directives(client.get("/login"))
    sandbox_origin = sandbox.url.rstrip("/")
    assert policy["default-src"] == ["'self'"]
    assert {"'self'", "https://js.stripe.com", sandbox_origin} <= set(policy["script-src"])
    assert {"https://js.stripe.com", "https://hooks.stripe.com", sandbox_origin} <= set(policy["frame-src"])
    assert {"'self'", "https://api.stripe.com", sandbox_origin} <= set(policy["connect-src"])
    assert {"'self'", "https://checkout.stripe.com", sandbox_origin} <= set(policy["form-action"])
    assert policy["img-src"] == ["'self'", "data:"] and policy["base-uri"] == ["'self'"]
    # the sandbox's Stripe.js adds one stylesheet: allowed by its hash, nothing else inline
    assert policy["style-src"][0] == "'self'" and policy["style-src"][1].startswith("'sha256-")


def test_test_mode_allows_stripe_only(database_url, sandbox_server):
    app = create_app(
        make_config(
            database_url,
            sandbox_server.url,
            STRIPE_SECRET_KEY="sk_test_x",
            STRIPE_PUBLISHABLE_KEY="pk_test_x",
            STRIPE_API_BASE=None,
        )
    )
    policy = directives(app.test_client().get("/healthz"))
    assert policy["script-src"] == ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"]
    assert policy["connect-src"] == ["'self'", "https://api.stripe.com"]
    assert policy["style-src"] == ["'self'"]


def test_hsts_in_live_mode_only(database_url, sandbox_server):
    app = create_app(
        make_config(
            database_url,
            sandbox_server.url,
            STRIPE_SECRET_KEY="sk_live_x",
            STRIPE_PUBLISHABLE_KEY="pk_live_x",
            STRIPE_API_BASE=None,
            STRIPE_WEBHOOK_SECRET="whsec_x",
            MAIL_DEFAULT_SENDER="Shop <shop@shop.example>",
            STORE_URL="https://shop.example",
        )
    )
    response = app.test_client().get("/healthz")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_no_template_has_inline_script_or_style():
    """What lets the policy go without 'unsafe-inline'."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "templates"
    for path in root.rglob("*.html"):
        if path.parent.name == "mail":  # mail HTML, styled inline: never served as a store page
            continue  # (/dev/mail shows it in a sandboxed frame under its own policy)
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", text, re.I), path


def test_signed_in_pages_are_never_stored(app, buyer, sandbox):
    buyer.post("/buy/points_medium")
    with app.app_context():
        order = db.session.scalar(select(Order.public_id))
    for path in ("/", "/orders/", f"/orders/{order}", f"/orders/{order}/pay", "/account/points", "/account/", "/nope"):
        response = buyer.get(path)
        assert response.headers.get("Cache-Control") == "no-store", path
    pay_page = buyer.get(f"/orders/{order}/pay")
    assert "_secret_" in pay_page.get_data(as_text=True)  # why: the client secret is on it


def test_anonymous_pages_may_be_cached(client, catalog):
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")


def test_the_catalog_page_cache_replays_the_security_headers(app, catalog, sandbox, monkeypatch):
    calls = []
    view = app.view_functions["shop.index"]

    def counting(*args, **kwargs):
        calls.append(1)
        return view(*args, **kwargs)

    monkeypatch.setitem(app.view_functions, "shop.index", counting)
    app.extensions["catalog_page_cache"].clear()
    first = app.test_client().get("/")
    second = app.test_client().get("/")  # answered by the WSGI cache, without Flask
    assert len(calls) == 1
    assert second.get_data() == first.get_data()
    for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert second.headers[name] == first.headers[name], name
    head = app.test_client().head("/")
    assert head.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    assert len(calls) == 1


# --- trusted hosts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/"),
        ("GET", "/login"),
        ("GET", "/nope"),
        ("GET", "/orders/ord_x/status"),
        ("POST", "/api/create-checkout-session"),
        ("POST", "/login"),
    ],
)
def test_an_untrusted_host_gets_a_plain_400(app, client, catalog, method, path):
    client.get("/")  # the page cache holds the catalog page: it must not answer evil.example
    response = client.open(path, method=method, headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert "evil.example" not in response.get_data(as_text=True)
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_trusted_host_with_a_port_is_fine(client, catalog):
    assert client.get("/", headers={"Host": "127.0.0.1:5000"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost"}).status_code == 200


def test_checkout_return_urls_use_the_external_url(database_url, sandbox_server, app, sandbox, catalog):
    shop = create_app(make_config(database_url, sandbox_server.url, EXTERNAL_URL="https://shop.example"))
    client = shop.test_client()
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    client.post(
        "/signup",
        data={"email": "ext@example.com", "name": "Ext", "password": TEST_PASSWORD, "confirm": TEST_PASSWORD},
        headers={"Host": "shop.example"},
    )
    response = client.post("/buy/points_medium", data={"method": "checkout"}, headers={"Host": "shop.example"})
    assert response.status_code == 303
    with shop.app_context():
        session_id = db.session.scalar(select(Order.stripe_checkout_session_id))
    session = sandbox.stripe.v1.checkout.sessions.retrieve(session_id)
    assert session.success_url.startswith("https://shop.example/orders/ord_")
    assert session.cancel_url.startswith("https://shop.example/orders/ord_")
    # the Payment Element's and the card form's return URLs too
    client.post("/buy/points_medium", data={"method": "page"}, headers={"Host": "shop.example"})
    with shop.app_context():
        public_id = db.session.scalar(select(Order.public_id).where(Order.stripe_payment_intent_id.is_not(None)))
    pay = client.get(f"/orders/{public_id}/pay", headers={"Host": "shop.example"})
    assert f'data-return-url="https://shop.example/orders/{public_id}"' in pay.get_data(as_text=True)
    card = client.get("/account/cards/new", headers={"Host": "shop.example"})
    assert 'data-return-url="https://shop.example/account/cards/' in card.get_data(as_text=True)


def test_trusted_hosts_from_the_environment(database_url, sandbox_server, monkeypatch, sandbox):
    monkeypatch.setenv("TRUSTED_HOSTS", "shop.example, www.shop.example")
    shop = create_app(make_config(database_url, sandbox_server.url))
    client = shop.test_client()
    assert client.get("/healthz", headers={"Host": "www.shop.example"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 400


# --- sizes ----------------------------------------------------------------------------------------


def test_a_huge_json_body_gets_413_with_the_error_shape(app, buyer, sandbox):
    body = json.dumps({"priceId": "price_1", "pad": "x" * 5_000_000})
    response = buyer.post("/api/create-checkout-session", data=body, content_type="application/json")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large" and error["type"] == "invalid_request_error"


def test_a_huge_form_gets_413(app, client, sandbox):
    response = client.post("/login", data={"email": "a@example.com", "password": "x" * 200_000})
    assert response.status_code == 413


def test_deeply_nested_json_gets_400(app, buyer, sandbox):
    nested = "[" * 30_000 + "]" * 30_000  # 60 KB: under the size limit, over the parser's depth
    response = buyer.post("/api/create-checkout-session", data=nested, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("bad_request", "invalid_price_id")
    with app.app_context():
        assert db.session.scalar(select(func.count(Order.id))) == 0


# --- query parameters: one strict parser ---------------------------------------------------------

HUGE = "99999999999999999999"


@pytest.mark.parametrize("value", [HUGE, "9223372036854775808", "2147483648", "-1", "0", "١٢", "1e3", "abc"])
def test_points_history_refuses_bad_cursors(app, buyer, sandbox, value):
    response = buyer.get(f"/account/points?before={value}")
    assert response.status_code == 400
    assert "before" in response.get_data(as_text=True)


def test_points_history_pages_with_good_cursors(app, buyer, sandbox):
    assert buyer.get("/account/points?before=2147483647").status_code == 200
    assert buyer.get("/account/points?before=").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/admin/purchases?date_to=9999-12-31",
        "/admin/purchases?date_from=0001-01-01",
        "/admin/purchases?date_from=2026-1-1",
        "/admin/purchases?date_to=20260101",
        "/admin/purchases?after=20260101T000000.000000~" + HUGE,
        "/admin/purchases?after=garbage",
        "/admin/purchases?after=20260101T000000.000000~-1",
        "/admin/purchases.csv?date_to=9999-12-31",
        "/admin/events?before=" + HUGE,
        "/admin/events?before=-5",
        "/admin/buyers?before=" + HUGE,
        "/admin/buyers?before=9223372036854775808",
        "/admin/events?before=2147483648",  # one past INTEGER: 500 on PostgreSQL before MAX_ID was 2**31-1
    ],
)
def test_admin_lists_refuse_bad_parameters_with_400(app, admin, path):
    response = admin.get(path)
    assert response.status_code == 400, response.status_code
    assert response.mimetype == "text/html"


def test_admin_buyer_ledger_refuses_a_huge_cursor(app, admin, buyer):
    from storefront.models import User

    with app.app_context():
        public_id = db.session.scalar(select(User.public_id).where(User.email == "buyer@example.com"))
    assert admin.get(f"/admin/buyers/{public_id}?before={HUGE}").status_code == 400
    assert admin.get(f"/admin/buyers/{public_id}?before=5").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/admin/events/" + HUGE,
        "/admin/events/9223372036854775808",
        "/admin/events/2147483648",
        "/admin/events/0",
        "/admin/events/١",
    ],
)
def test_admin_event_ids_out_of_range_are_not_found(app, admin, path):
    assert admin.get(path).status_code == 404


def test_admin_event_replay_with_a_huge_id_changes_nothing(app, admin):
    assert admin.post(f"/admin/events/{HUGE}/replay").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count(StripeEvent.id))) == 0


def test_good_admin_parameters_still_work(app, admin):
    assert admin.get("/admin/purchases?date_from=2026-01-01&date_to=9998-12-31").status_code == 200
    assert admin.get("/admin/purchases.csv?date_to=2026-12-31").status_code == 200
    assert admin.get("/admin/events?before=2147483647").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(PointsEntry.id))) == 0
        assert db.session.execute(select(func.count(Price.id))).scalar_one() > 0


@pytest.mark.parametrize(
    "path",
    [
        "/admin/buyers?q=a%00b",
        "/admin/events?q=a%00b",
        "/admin/purchases?product=a%00b",
        "/admin/purchases.csv?product=a%00b",
        "/orders/%00",
        "/orders/abc%00def",
        "/?x%00=1",
    ],
)
def test_a_nul_in_the_address_is_a_400(app, admin, path):
    """PostgreSQL refuses NUL in a text value: these answered 500 there (found by the fuzz suite)."""
    response = admin.get(path)
    assert response.status_code == 400, path
    assert "NUL" in response.get_data(as_text=True)


def test_a_nul_in_a_form_or_json_body_is_a_400(app, buyer):
    form = buyer.post(
        "/account/password", data={"current_password": "x\x00y", "new_password": "n" * 20, "confirm": "n" * 20}
    )
    assert form.status_code == 400 and "NUL" in form.get_data(as_text=True)
    api = buyer.post(
        "/api/create-checkout-session", json={"priceId": "price_\x00"}, headers={"Accept": "application/json"}
    )
    assert api.status_code == 400
    assert "NUL" in api.get_json()["error"]["message"]
