import pytest
from flask import abort

from storefront import create_app

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


@pytest.mark.parametrize("path,status,text", [
    ("/nope", 404, "couldn&#39;t find that page"),
    ("/forbidden", 403, "have access"),
    ("/boom", 500, "Something went wrong on our side"),
])
def test_html_error_pages_use_the_site_look(error_app, path, status, text):
    response = error_app.test_client().get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert text in html and 'class="site-header"' in html and "site.css" in html
    assert "secret internals" not in html


@pytest.mark.parametrize("path,status,code", [
    ("/nope", 404, "not_found"),
    ("/forbidden", 403, "forbidden"),
    ("/boom", 500, "internal_error"),
])
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
    assert response.get_json()["error"] == {"code": "internal_error", "type": "api_error",
                                            "message": response.get_json()["error"]["message"]}
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
    app = create_app(make_config(database_url, sandbox_server.url, STRIPE_SECRET_KEY="sk_test_x",
                                 STRIPE_PUBLISHABLE_KEY="pk_test_x", STRIPE_API_BASE=None))
    assert app.config["STRIPE_MODE"] == "test"
    page = app.test_client().get("/test-cards").get_data(as_text=True)
    assert "4000002500003155" in page and "built-in list" in page
