import pytest

from storefront import ConfigError, create_app
from storefront.config import load_settings
from storefront.stripe_gateway import StripeGateway

BASE = {"SQLALCHEMY_DATABASE_URI": "sqlite://"}


def settings(env=None, **overrides):
    return load_settings(env or {}, "/tmp/instance", overrides={**BASE, **overrides})


def test_no_keys_means_sandbox_with_default_keys():
    s = settings()
    assert s["STRIPE_MODE"] == "sandbox"
    assert s["STRIPE_SECRET_KEY"] == "sk_test_sandbox"
    assert s["STRIPE_PUBLISHABLE_KEY"] == "pk_test_sandbox"
    assert s["STRIPE_API_BASE"] == "http://127.0.0.1:12111"
    assert s["STRIPE_JS_URL"] == "http://127.0.0.1:12111/v3/"


def test_test_key_uses_stripes_default_base():
    s = settings({"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_PUBLISHABLE_KEY": "pk_test_abc"})
    assert s["STRIPE_MODE"] == "test"
    assert s["STRIPE_API_BASE"] is None
    assert s["STRIPE_JS_URL"] == "https://js.stripe.com/v3/"
    gateway = StripeGateway.from_config(s)
    assert gateway.api_base is None  # the SDK's own default: https://api.stripe.com


def test_test_key_with_local_base_is_sandbox():
    s = settings({"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_API_BASE": "http://127.0.0.1:9999/"})
    assert s["STRIPE_MODE"] == "sandbox"
    assert s["STRIPE_API_BASE"] == "http://127.0.0.1:9999"


def test_live_mode_refuses_to_start_without_webhook_secret():
    env = {"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
           "SECRET_KEY": "a-long-random-secret-value"}
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        settings(env)
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        create_app({**BASE, **env})


def test_live_mode_refuses_dev_secret_key_and_test_publishable_key():
    env = {"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_PUBLISHABLE_KEY": "pk_test_abc",
           "STRIPE_WEBHOOK_SECRET": "whsec_x"}
    with pytest.raises(ConfigError) as info:
        settings(env)
    assert "SECRET_KEY" in str(info.value) and "pk_live_" in str(info.value)


def test_live_mode_forces_secure_cookies_and_hides_banner():
    env = {"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
           "STRIPE_WEBHOOK_SECRET": "whsec_abc", "SECRET_KEY": "a-long-random-secret-value",
           "SESSION_COOKIE_SECURE": False}
    app = create_app({**BASE, **env})
    assert app.config["STRIPE_MODE"] == "live"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["STRIPE_API_BASE"] is None
    with app.app_context():
        from storefront.extensions import db
        db.create_all()
    html = app.test_client().get("/").get_data(as_text=True)
    assert "Test mode" not in html
    assert app.test_client().get("/test-cards").status_code == 404


def test_environment_is_read_at_create_time(monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_fromenv")
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_fromenv")
    monkeypatch.setenv("STRIPE_TIMEOUT", "7")
    app = create_app(BASE)
    assert app.config["STRIPE_MODE"] == "test"
    assert app.config["STRIPE_TIMEOUT"] == 7.0


def test_unknown_key_prefix_is_refused():
    with pytest.raises(ConfigError):
        settings({"STRIPE_SECRET_KEY": "pk_test_oops"})


def test_postgres_url_uses_psycopg_driver():
    s = load_settings({"DATABASE_URL": "postgres://u@h/db"}, "/tmp/instance")
    assert s["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
