import os
import secrets
import stat
from pathlib import Path

import pytest

from storefront import ConfigError, create_app
from storefront.config import load_settings
from storefront.stripe_gateway import StripeGateway

from .conftest import TEST_PASSWORD, found, make_config

BASE = {"SQLALCHEMY_DATABASE_URI": "sqlite://"}
#: a fit key (random, so it is in no file of the repository)
GOOD_KEY = secrets.token_hex(32)
ROOT = Path(__file__).resolve().parent.parent
OLD_DEFAULT_KEY = "dev-only-not-secret-change-me"
#: what live mode needs to send mail (tests/test_mail_catcher.py: refused without it)
LIVE_MAIL = {
    "MAIL_SERVER": "smtp.example.com",
    "MAIL_DEFAULT_SENDER": "Shop <shop@shop.example>",
    "STORE_URL": "https://shop.example",
}


INSTANCE = ""


@pytest.fixture(autouse=True)
def _instance(tmp_path):
    """Settings built here keep any generated key in a temporary instance folder."""
    global INSTANCE
    INSTANCE = str(tmp_path / "instance")


def settings(env=None, **overrides):
    return load_settings(env or {}, INSTANCE, overrides={**BASE, **overrides})


def test_no_keys_means_sandbox_with_default_keys():
    s = settings()
    assert s["STRIPE_MODE"] == "sandbox"
    assert s["STRIPE_SECRET_KEY"] == "sk_test_sandbox"
    assert s["STRIPE_PUBLISHABLE_KEY"] == "pk_test_sandbox"
    assert s["STRIPE_API_BASE"] == "http://127.0.0.1:12111"
    assert s["STRIPE_JS_URL"] == "http://127.0.0.1:12111/v3/"


def test_test_key_uses_stripes_default_base():
    s = settings({"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_PUBLISHABLE_KEY": "pk_test_abc", "SECRET_KEY": GOOD_KEY})
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
    env = {"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_PUBLISHABLE_KEY": "pk_live_abc", "SECRET_KEY": GOOD_KEY}
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        settings(env)
    with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
        create_app({**BASE, **env})


def test_live_mode_refuses_dev_secret_key_and_test_publishable_key():
    env = {
        "STRIPE_SECRET_KEY": "sk_live_abc",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_abc",
        "STRIPE_WEBHOOK_SECRET": "whsec_x",
    }
    with pytest.raises(ConfigError) as info:
        settings(env)
    assert "SECRET_KEY" in str(info.value) and "pk_live_" in str(info.value)


def test_live_mode_forces_secure_cookies_and_hides_banner():
    env = {
        "STRIPE_SECRET_KEY": "sk_live_abc",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
        "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "SECRET_KEY": GOOD_KEY,
        "SESSION_COOKIE_SECURE": False,
        **LIVE_MAIL,
    }
    app = create_app({**BASE, **env, "INSTANCE_PATH": INSTANCE})
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
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)
    app = create_app({**BASE, "INSTANCE_PATH": INSTANCE})
    assert app.config["STRIPE_MODE"] == "test"
    assert app.config["STRIPE_TIMEOUT"] == 7.0


def test_unknown_key_prefix_is_refused():
    with pytest.raises(ConfigError):
        settings({"STRIPE_SECRET_KEY": "pk_test_oops"})


def test_postgres_url_uses_psycopg_driver():
    s = load_settings({"DATABASE_URL": "postgres://u@h/db"}, INSTANCE)
    assert s["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


# --------------------------------------------------------------------------- SECRET_KEY
def test_sandbox_without_secret_key_makes_a_random_one_once_in_instance():
    first = settings()
    path = Path(INSTANCE) / "secret_key"
    assert first["SECRET_KEY"] != OLD_DEFAULT_KEY and len(first["SECRET_KEY"]) == 64
    assert path.read_text().strip() == first["SECRET_KEY"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert settings()["SECRET_KEY"] == first["SECRET_KEY"]  # kept: sessions survive restarts
    assert [p.name for p in Path(INSTANCE).iterdir()] == ["secret_key"]  # no temp file left


def test_instance_folder_is_not_in_git():
    lines = (ROOT / ".gitignore").read_text().split()
    assert "instance/" in lines


def test_the_old_default_key_is_nowhere_in_the_code():
    assert OLD_DEFAULT_KEY not in (ROOT / "storefront" / "config.py").read_text().replace(
        f'"{OLD_DEFAULT_KEY}"', ""
    )  # only in the list of refused keys


@pytest.mark.parametrize(
    "key,problem",
    [
        (None, "not set"),
        ("short", "shorter than 32 bytes"),
        ("x" * 40, "too few characters"),
        (OLD_DEFAULT_KEY, "published"),
        ("test-secret-key", "published"),
    ],
)
@pytest.mark.parametrize(
    "mode_env",
    [
        {"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_PUBLISHABLE_KEY": "pk_test_abc"},
        {
            "STRIPE_SECRET_KEY": "sk_live_abc",
            "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
            "STRIPE_WEBHOOK_SECRET": "whsec_abc",
            **LIVE_MAIL,
        },
    ],
    ids=["test", "live"],
)
def test_test_and_live_modes_refuse_a_missing_short_or_published_key(mode_env, key, problem):
    env = dict(mode_env)
    if key is not None:
        env["SECRET_KEY"] = key
    with pytest.raises(ConfigError, match="SECRET_KEY") as info:
        settings(env)
    assert problem in str(info.value) and "token_hex(32)" in str(info.value)
    assert not (Path(INSTANCE) / "secret_key").exists()  # no key is made up outside the sandbox
    assert settings({**mode_env, "SECRET_KEY": GOOD_KEY})["SECRET_KEY"] == GOOD_KEY


def test_sandbox_refuses_a_published_key_too():
    with pytest.raises(ConfigError, match="published"):
        settings({"SECRET_KEY": OLD_DEFAULT_KEY})


def _forged_session(key: str, data: dict) -> str:
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    forger = Flask("forger")
    forger.secret_key = key
    return found(SecureCookieSessionInterface().get_signing_serializer(forger), "session serializer").dumps(data)


def _forged_remember(key: str, value: str) -> str:
    from flask import Flask
    from flask_login.utils import encode_cookie

    forger = Flask("forger")
    forger.secret_key = key
    with forger.app_context():
        return encode_cookie(value)


def test_cookies_forged_with_the_old_default_key_do_not_open_admin(database_url, sandbox_server, app, sandbox):
    # A sandbox-mode store started with no SECRET_KEY, as `bash scripts/run.sh` starts it.
    store = create_app(make_config(database_url, sandbox_server.url, SECRET_KEY=None, INSTANCE_PATH=INSTANCE))
    from storefront.extensions import db
    from storefront.services import accounts

    with store.app_context():
        admin = accounts.register_user("root@example.com", "Root", TEST_PASSWORD, is_admin=True, create_customer=False)
        accounts.start_session(admin, max_age=accounts.sign_in_max_age(store.config))
        user_id = admin.get_id()  # the attacker even knows the token of the admin's sign-in
    real_key = store.config["SECRET_KEY"]
    assert real_key != OLD_DEFAULT_KEY

    def admin_page(session=None, remember=None):
        client = store.test_client()
        if session:
            client.set_cookie("session", session)
        if remember:
            client.set_cookie("remember_token", remember)
        return client.get("/admin/").status_code

    from importlib.metadata import version

    from flask_login.utils import _create_identifier

    browser = {"REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": f"Werkzeug/{version('werkzeug')}"}
    with store.test_request_context(environ_base=browser):  # the attacker knows the victim's
        identifier = _create_identifier()  # address and browser
    session = {"_user_id": user_id, "_fresh": True, "_id": identifier}
    # the forging is right: signed with the store's real key it opens /admin ...
    assert admin_page(session=_forged_session(real_key, session)) == 200
    assert admin_page(remember=_forged_remember(real_key, user_id)) == 200
    # ... and with the published key it does not
    assert admin_page(session=_forged_session(OLD_DEFAULT_KEY, session)) == 302
    assert admin_page(remember=_forged_remember(OLD_DEFAULT_KEY, user_id)) == 302
    with store.app_context():
        db.engine.dispose()


def test_processes_starting_together_agree_on_one_sandbox_key():
    import threading

    from storefront.config import sandbox_secret_key

    barrier, keys = threading.Barrier(8), []

    def start():
        barrier.wait()
        keys.append(sandbox_secret_key(INSTANCE))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert (Path(INSTANCE) / "secret_key").read_text().strip() == keys[0]


@pytest.mark.parametrize(
    "name", ["LOGIN_LIMIT_PER_ACCOUNT", "LOGIN_LIMIT_PER_IP", "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL", "SIGNUP_LIMIT_PER_IP"]
)
def test_an_unreadable_rate_limit_is_refused_at_start(name):
    with pytest.raises(ConfigError, match=name):
        settings({name: "lots"})
    assert settings({name: "7 per hour"})[name] == "7 per hour"
