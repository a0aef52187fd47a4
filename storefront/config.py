"""Settings from the environment, checked at start.

`load_settings()` is the one place that decides the Stripe mode:

* no secret key            -> "sandbox": the offline Stripe at http://127.0.0.1:12111
* ``sk_test_`` key         -> "test": Stripe's test mode (or the sandbox when
                              STRIPE_API_BASE points somewhere other than Stripe)
* ``sk_live_`` key         -> "live": refuses to start without a webhook secret or
                              a real SECRET_KEY, and forces secure cookies.

Nothing here runs at import time; ``create_app`` calls ``load_settings``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

SANDBOX_API_BASE = "http://127.0.0.1:12111"
SANDBOX_SECRET_KEY = "sk_test_sandbox"
SANDBOX_PUBLISHABLE_KEY = "pk_test_sandbox"
STRIPE_DEFAULT_JS_URL = "https://js.stripe.com/v3/"
DEV_SECRET_KEY = "dev-only-not-secret-change-me"

# Names read from the environment (all optional outside live mode).
ENV_NAMES = (
    "SECRET_KEY",
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "STRIPE_TIMEOUT",
    "STRIPE_MAX_NETWORK_RETRIES",
    "RATELIMIT_STORAGE_URI",
    "LOGIN_LIMIT_PER_ACCOUNT",
    "LOGIN_LIMIT_PER_IP",
    "CATALOG_PATH",
)


class ConfigError(RuntimeError):
    """The settings are unsafe or incomplete; the app refuses to start."""


def _defaults(instance_path: str) -> dict[str, Any]:
    return {
        "SECRET_KEY": None,
        "DATABASE_URL": None,
        "SQLALCHEMY_DATABASE_URI": None,
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "STRIPE_SECRET_KEY": None,
        "STRIPE_PUBLISHABLE_KEY": None,
        "STRIPE_WEBHOOK_SECRET": None,
        "STRIPE_API_BASE": None,
        "STRIPE_TIMEOUT": 10.0,
        "STRIPE_MAX_NETWORK_RETRIES": 2,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_HEADERS_ENABLED": False,
        "LOGIN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
        "LOGIN_LIMIT_PER_IP": "30 per 5 minutes",
        "CATALOG_PATH": str(Path(__file__).with_name("catalog.toml")),
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": False,
        "INSTANCE_PATH": instance_path,
    }


def _coerce(name: str, value: Any) -> Any:
    if name == "STRIPE_TIMEOUT":
        return float(value)
    if name == "STRIPE_MAX_NETWORK_RETRIES":
        return int(value)
    return value


def stripe_mode(secret_key: str | None, api_base: str | None) -> str:
    """Decide sandbox / test / live from the secret key and the API base."""
    if not secret_key:
        return "sandbox"
    if secret_key.startswith("sk_live_") or secret_key.startswith("rk_live_"):
        return "live"
    if secret_key.startswith("sk_test_") or secret_key.startswith("rk_test_"):
        if api_base and not _is_stripe_host(api_base):
            return "sandbox"
        return "test"
    raise ConfigError(
        "STRIPE_SECRET_KEY must start with sk_test_ or sk_live_ (got a key with another prefix)."
    )


def _is_stripe_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "stripe.com" or host.endswith(".stripe.com")


def load_settings(
    environ: Mapping[str, str] | None = None,
    instance_path: str = "instance",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the app settings: defaults < environment < explicit overrides; then check them."""
    environ = os.environ if environ is None else environ
    settings = _defaults(instance_path)
    for name in ENV_NAMES:
        value = environ.get(name)
        if value not in (None, ""):
            settings[name] = _coerce(name, value)
    if overrides:
        settings.update(overrides)

    # -- database -----------------------------------------------------------------
    db_url = settings.get("SQLALCHEMY_DATABASE_URI") or settings.get("DATABASE_URL")
    if not db_url:
        db_url = "sqlite:///" + str(Path(instance_path) / "storefront.sqlite3")
    if db_url.startswith("postgres://"):  # Heroku-style URL
        db_url = "postgresql://" + db_url[len("postgres://"):]
    if db_url.startswith("postgresql://"):
        db_url = "postgresql+psycopg://" + db_url[len("postgresql://"):]
    settings["SQLALCHEMY_DATABASE_URI"] = db_url
    engine_options = dict(settings.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if db_url.startswith("sqlite"):
        engine_options.setdefault("connect_args", {"timeout": 30})
    else:
        engine_options.setdefault("pool_pre_ping", True)
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options

    # -- Stripe mode -------------------------------------------------------------------
    secret = settings.get("STRIPE_SECRET_KEY")
    base = settings.get("STRIPE_API_BASE")
    mode = stripe_mode(secret, base)
    settings["STRIPE_MODE"] = mode
    if mode == "sandbox":
        settings["STRIPE_SECRET_KEY"] = secret or SANDBOX_SECRET_KEY
        settings["STRIPE_PUBLISHABLE_KEY"] = settings.get("STRIPE_PUBLISHABLE_KEY") or SANDBOX_PUBLISHABLE_KEY
        settings["STRIPE_API_BASE"] = (base or SANDBOX_API_BASE).rstrip("/")
        settings["STRIPE_JS_URL"] = settings["STRIPE_API_BASE"] + "/v3/"
    else:
        # None means "Stripe's own default base" -- no code change to talk to real Stripe.
        settings["STRIPE_API_BASE"] = base.rstrip("/") if base else None
        settings["STRIPE_JS_URL"] = STRIPE_DEFAULT_JS_URL
    settings["STRIPE_TEST_MODE"] = mode != "live"

    _check(settings)
    if not settings.get("SECRET_KEY"):
        settings["SECRET_KEY"] = DEV_SECRET_KEY
    return settings


def _check(settings: dict[str, Any]) -> None:
    mode = settings["STRIPE_MODE"]
    publishable = settings.get("STRIPE_PUBLISHABLE_KEY") or ""
    if mode == "live":
        problems = []
        if not settings.get("STRIPE_WEBHOOK_SECRET"):
            problems.append("STRIPE_WEBHOOK_SECRET is required with a live key")
        if not publishable.startswith("pk_live_"):
            problems.append("STRIPE_PUBLISHABLE_KEY must be a pk_live_ key with a live secret key")
        if not settings.get("SECRET_KEY") or settings["SECRET_KEY"] == DEV_SECRET_KEY:
            problems.append("SECRET_KEY must be set to a long random value in live mode")
        base = settings.get("STRIPE_API_BASE")
        if base and not _is_stripe_host(base):
            problems.append("STRIPE_API_BASE must be Stripe's own API in live mode")
        if problems:
            raise ConfigError("Refusing to start in live mode: " + "; ".join(problems) + ".")
        # Live mode never sends the session over plain HTTP.
        settings["SESSION_COOKIE_SECURE"] = True
        settings["REMEMBER_COOKIE_SECURE"] = True
    elif mode == "test":
        if publishable and not publishable.startswith("pk_test_"):
            raise ConfigError("STRIPE_PUBLISHABLE_KEY must be a pk_test_ key with a test secret key.")
        if not publishable:
            raise ConfigError("STRIPE_PUBLISHABLE_KEY (pk_test_...) is required with a test secret key.")
