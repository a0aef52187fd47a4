import pytest
from flask import abort

from storefront import create_app
from storefront.services.errors import Conflict, NotFound, ServiceError, unavailable
from storefront.stripe_gateway import StripeUnavailable
from storefront.web.errors import redirect_on_error

from .conftest import make_config


@pytest.fixture
def error_app(database_url, sandbox_server):
    app = create_app(make_config(database_url, sandbox_server.url))

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals must not leak")

    @app.get("/forbidden")
    def forbidden():
        abort(403)

    @app.get("/api/boom")
    def api_boom():
        raise RuntimeError("secret internals must not leak")

    return app


@pytest.mark.parametrize(
    "path,status,text",
    [
        ("/nope", 404, "couldn&#39;t find that page"),
        ("/forbidden", 403, "have access"),
        ("/boom", 500, "Something went wrong on our side"),
    ],
)
def test_html_error_pages_use_the_site_look(error_app, path, status, text):
    response = error_app.test_client().get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert text in html and 'class="site-header"' in html and "site.css" in html
    assert "secret internals" not in html


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/nope", 404, "not_found"),
        ("/forbidden", 403, "forbidden"),
        ("/boom", 500, "internal_error"),
    ],
)
def test_json_clients_get_json_errors(error_app, path, status, code):
    response = error_app.test_client().get(path, headers={"Accept": "application/json"})
    assert response.status_code == status
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert "secret internals" not in response.get_data(as_text=True)


def test_api_paths_always_answer_json(error_app):
    client = error_app.test_client()
    response = client.get("/api/nothing-here")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.get_json()["error"] == {
        "code": "internal_error",
        "type": "api_error",
        "message": response.get_json()["error"]["message"],
    }
    response = client.post("/api/config")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"


def test_browsers_get_html_even_with_wildcard_accept(error_app):
    response = error_app.test_client().get("/nope", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.mimetype == "text/html"


def test_throttled_login_answers_json_for_json_clients(app, client, sandbox, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_IP", "1 per minute")
    client.post("/login", data={"email": "a@example.com", "password": "x" * 12})
    response = client.post("/login", data={"email": "a@example.com", "password": "x" * 12})
    assert response.status_code == 429


def test_api_config_exposes_only_publishable_key(client):
    data = client.get("/api/config").get_json()
    assert data["publishableKey"] == "pk_test_sandbox"
    assert data["mode"] == "sandbox"
    assert "sk_" not in str(data)


def test_test_mode_banner_and_test_cards_page(client, sandbox):
    html = client.get("/").get_data(as_text=True)
    assert "Test mode" in html and 'href="/test-cards"' in html
    page = client.get("/test-cards").get_data(as_text=True)
    assert "4242424242424242" in page
    assert "the sandbox" in page


def test_test_mode_uses_builtin_test_cards(database_url, sandbox_server):
    app = create_app(
        make_config(
            database_url,
            sandbox_server.url,
            STRIPE_SECRET_KEY="sk_test_x",
            STRIPE_PUBLISHABLE_KEY="pk_test_x",
            STRIPE_API_BASE=None,
        )
    )
    assert app.config["STRIPE_MODE"] == "test"
    page = app.test_client().get("/test-cards").get_data(as_text=True)
    assert "4000002500003155" in page and "built-in list" in page


# --- ServiceError: one handler (web/errors.py) ------------------------------------------------------


@pytest.fixture
def refusing_app(database_url, sandbox_server):
    """The real app with views that raise service errors, as the shop's views do."""
    app = create_app(make_config(database_url, sandbox_server.url))

    @app.get("/api/refuse/<kind>")
    def api_refuse(kind: str):
        raise REFUSALS[kind]

    @app.get("/refuse/<kind>/<public_id>")
    @redirect_on_error("admin.order", "public_id", category="warning")
    def form_refuse(kind: str, public_id: str):
        raise REFUSALS[kind]

    @app.get("/refuse-any/<kind>/<public_id>")
    @redirect_on_error("admin.order", "public_id", not_found_page=False)
    def form_refuse_even_not_found(kind: str, public_id: str):
        raise REFUSALS[kind]

    @app.get("/refuse-unmarked/<kind>")
    def unmarked_refuse(kind: str):
        raise REFUSALS[kind]

    return app


REFUSALS: dict[str, ServiceError] = {
    "owned": Conflict("You already own the Lifetime plan.", code="already_owned"),
    "down": unavailable(StripeUnavailable("timeout"), " Nothing was charged."),
    "missing": NotFound("We couldn't find that card.", code="card_not_found"),
    "plain": ServiceError("Points must be a whole number."),
}


@pytest.mark.parametrize(
    "kind,status,code,error_type",
    [
        ("owned", 409, "already_owned", "invalid_request_error"),
        ("down", 503, "payment_provider_unavailable", "api_error"),
        ("missing", 404, "card_not_found", "invalid_request_error"),
        ("plain", 400, "invalid_request", "invalid_request_error"),
    ],
)
def test_service_errors_answer_the_api_json_shape(refusing_app, kind, status, code, error_type):
    response = refusing_app.test_client().get(f"/api/refuse/{kind}")
    assert response.status_code == status and response.is_json
    assert response.get_json() == {"error": {"code": code, "type": error_type, "message": REFUSALS[kind].message}}


def test_a_json_client_of_a_form_gets_json_too(refusing_app):
    response = refusing_app.test_client().get("/refuse/owned/ord_1", headers={"Accept": "application/json"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "already_owned"


def test_a_form_gets_a_flash_and_a_redirect_back(refusing_app):
    client = refusing_app.test_client()
    response = client.get("/refuse/down/ord_1")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/orders/ord_1"
    with client.session_transaction() as session:
        assert session["_flashes"] == [
            (
                "warning",
                "Our payment provider is not responding right now. Please try again in a minute. Nothing was charged.",
            )
        ]


def test_not_found_shows_the_not_found_page_unless_the_view_redirects_it(refusing_app):
    client = refusing_app.test_client()
    response = client.get("/refuse/missing/ord_1")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "couldn&#39;t find that page" in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "_flashes" not in session
    response = client.get("/refuse-any/missing/ord_1")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/orders/ord_1"
    with client.session_transaction() as session:
        assert session["_flashes"] == [("error", "We couldn't find that card.")]


def test_a_view_without_a_target_shows_the_error_page_with_the_message(refusing_app):
    response = refusing_app.test_client().get("/refuse-unmarked/owned")
    assert response.status_code == 409 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "You already own the Lifetime plan." in html and 'class="site-header"' in html


def test_real_views_refuse_through_the_handler(client, buyer, sandbox):
    """A card that isn't the buyer's: the 404 page for the form, the JSON shape for a script."""
    response = buyer.post("/account/cards/pm_doesNotExist/default")
    assert response.status_code == 404 and response.mimetype == "text/html"
    response = buyer.post("/account/cards/pm_doesNotExist/default", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "card_not_found", "type": "invalid_request_error", "message": "We couldn't find that card."}
    }
    sandbox.fault("error", count=10, path_prefix="/v1/payment_methods")
    response = buyer.post("/account/cards/pm_doesNotExist/remove")
    assert response.status_code == 302 and response.headers["Location"] == "/account/cards"
    page = buyer.get("/account/cards").get_data(as_text=True)
    assert "not responding" in page
