"""Settings from the environment, checked at start.

`load_settings()` is the one place that decides the Stripe mode:

* no secret key            -> "sandbox": the offline Stripe at http://127.0.0.1:12111
* ``sk_test_`` key         -> "test": Stripe's test mode (or the sandbox when
                              STRIPE_API_BASE points somewhere other than Stripe)
* ``sk_live_`` key         -> "live": refuses to start without a webhook secret or
                              a real SECRET_KEY, and forces secure cookies.

``SECRET_KEY`` signs sessions, remember-me cookies and CSRF tokens, so no value that was ever
written in this repository may sign anything: test and live modes refuse to start without a
long random one, and sandbox mode without one generates a random key once and keeps it in
``instance/secret_key`` (mode 0600; ``instance/`` is not in git).

Nothing here runs at import time; ``create_app`` calls ``load_settings``.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .api_settings import API_ENV_NAMES, api_defaults, api_settings

SANDBOX_API_BASE = "http://127.0.0.1:12111"
SANDBOX_SECRET_KEY = "sk_test_sandbox"  # noqa: S105 - the sandbox accepts any sk_test_ key
SANDBOX_PUBLISHABLE_KEY = "pk_test_sandbox"
STRIPE_DEFAULT_JS_URL = "https://js.stripe.com/v3/"
#: Keys published in this repository (old defaults, tests, benchmarks): refused in every mode.
PUBLISHED_SECRET_KEYS = frozenset(
    {
        "dev-only-not-secret-change-me",
        "test-secret-key",
        "a-long-random-secret-value",
        "bench-secret",
        "bench",
        "change-me",
        "secret",
        "dev",
    }
)
MIN_SECRET_KEY_BYTES = 32
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
SECRET_KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105

log = logging.getLogger(__name__)

#: mail settings read from the environment (storefront/mailer.py; issue 13)
MAIL_ENV_NAMES = (
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USE_SSL",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_DEFAULT_SENDER",
    "MAIL_TIMEOUT",
    "MAIL_ACTION_DELAY_SECONDS",
    "STORE_NAME",
    "STORE_URL",
    "MAIL_CATCHER_DIR",
)
#: where sandbox mode sends mail: the local catcher started by scripts/run.sh
SANDBOX_MAIL_SERVER = "127.0.0.1"
SANDBOX_MAIL_PORT = 8025
SANDBOX_STORE_URL = "http://127.0.0.1:5000"

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
    "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL",
    "SIGNUP_LIMIT_PER_IP",
    "PASSWORD_RESET_LIMIT_PER_IP",
    "PASSWORD_RESET_LIMIT_PER_ACCOUNT",
    "ACCOUNT_MAIL_LIMIT_PER_ACCOUNT",
    "CATALOG_PATH",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_TOKEN",
    "METRICS_ALLOW",
    "READYZ_STRIPE_CACHE_SECONDS",
    "MAX_CONTENT_LENGTH",
    "TRUSTED_HOSTS",
    "EXTERNAL_URL",
    "QUEUE_URL",
    "QUEUE_NAME",
    "QUEUE_SQLITE_PATH",
    "WEBHOOK_RETRY_SECONDS",
    "WEBHOOK_RETRY_MAX_SECONDS",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_LEASE_SECONDS",
    "REDIS_URL",
    "CACHE_REDIS_URL",
    *MAIL_ENV_NAMES,
    *API_ENV_NAMES,
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
        **api_defaults(),  # the JSON API's CORS origins, rate limit, proxies; RATELIMIT_STORAGE_URI
        "RATELIMIT_HEADERS_ENABLED": False,
        # failed log-ins per (account, IP): an attacker elsewhere can't lock the owner out
        "LOGIN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
        "LOGIN_LIMIT_PER_IP": "30 per 5 minutes",
        # failed log-ins per account from everywhere: a ceiling on distributed guessing
        "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL": "100 per hour",
        "SIGNUP_LIMIT_PER_IP": "10 per hour",
        # "Forgot password?" requests per IP (more answer 429), and reset mails per address
        # (more are silently not sent: the answer must not say whether the address has an account)
        "PASSWORD_RESET_LIMIT_PER_IP": "10 per hour",
        "PASSWORD_RESET_LIMIT_PER_ACCOUNT": "3 per hour",
        # verification links sent again and email-change requests, per account
        "ACCOUNT_MAIL_LIMIT_PER_ACCOUNT": "5 per hour",
        "CATALOG_PATH": str(Path(__file__).with_name("catalog.toml")),
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_DURATION": timedelta(days=30),
        # A session cookie is refused once it is this old since it was last written.
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "INSTANCE_PATH": instance_path,
        # request bodies: forms and JSON are small (413 above this; see web/security.py)
        "MAX_CONTENT_LENGTH": 64 * 1024,
        # Host headers we answer (comma-separated in the environment); None = localhost +
        # the host of EXTERNAL_URL. EXTERNAL_URL (https://shop.example) is where absolute
        # URLs given to Stripe point.
        "TRUSTED_HOSTS": None,
        "EXTERNAL_URL": None,
        # operations (web/ops.py, log_setup.py): None = decided by the mode (_ops_settings)
        "LOG_FORMAT": None,
        "LOG_LEVEL": "INFO",
        "METRICS_TOKEN": None,
        "METRICS_ALLOW": None,
        "READYZ_STRIPE_CACHE_SECONDS": 5.0,
        **_queue_defaults(instance_path),
        **_mail_defaults(),
        # Redis shared by every worker (storefront/cache.py; the cache may have its own)
        "REDIS_URL": None,
        "CACHE_REDIS_URL": None,
        "CACHE_TYPE": None,  # None: decided by cache_settings
        "CACHE_KEY_PREFIX": "storefront:",
    }


def _queue_defaults(instance_path: str) -> dict[str, Any]:
    """The task queue (storefront/jobs): Redis at ``QUEUE_URL`` (else ``REDIS_URL``) when set,
    so workers on several machines share it; else a SQLite file. A stored webhook event that
    failed is retried after 30 s x 2^(n-1), at most an hour apart, 8 attempts in all; a worker
    holds an event it took for the lease at most (then the sweeper may give it to another)."""
    return {
        "QUEUE_URL": None,
        "QUEUE_NAME": "storefront",
        "QUEUE_SQLITE_PATH": str(Path(instance_path) / "queue.sqlite3"),
        "WEBHOOK_RETRY_SECONDS": 30.0,
        "WEBHOOK_RETRY_MAX_SECONDS": 3600.0,
        "WEBHOOK_MAX_ATTEMPTS": 8,
        "WEBHOOK_LEASE_SECONDS": 120.0,
    }


def _mail_defaults() -> dict[str, Any]:
    """Mail (storefront/mailer.py, Flask-Mailman over SMTP). ``None`` server/port/sender/URL are
    decided by the mode in :func:`mail_settings`; ``MAIL_BACKEND`` is always SMTP (Flask-Mailman
    would pick its in-memory backend under ``TESTING``: the tests read a real SMTP server)."""
    return {
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": None,
        "MAIL_PORT": None,
        "MAIL_USE_TLS": False,
        "MAIL_USE_SSL": False,
        "MAIL_USERNAME": None,
        "MAIL_PASSWORD": None,
        "MAIL_DEFAULT_SENDER": None,
        "MAIL_TIMEOUT": 10.0,
        "STORE_NAME": "Storefront",
        "STORE_URL": None,
        # where `flask mail-catcher` writes and /dev/mail reads caught mail (sandbox); None: instance/mail
        "MAIL_CATCHER_DIR": None,
        # an unsent mail is tried again after 60 s x 2^(n-1) (at most an hour), 8 times in all
        "MAIL_RETRY_SECONDS": 60.0,
        "MAIL_MAX_ATTEMPTS": 8,
        "MAIL_LEASE_SECONDS": 120.0,
        # an "action needed" mail about an order waits this long: the buyer is usually on the pay
        # page, finishing 3-D Secure or trying another card; done by then, it is dropped unsent
        "MAIL_ACTION_DELAY_SECONDS": 600.0,
    }


_TRUE = ("1", "true", "yes", "on")


def _coerce(name: str, value: Any) -> Any:
    if name in ("MAIL_USE_TLS", "MAIL_USE_SSL"):
        return str(value).strip().lower() in _TRUE
    if name == "MAIL_PORT":
        return int(value)
    if name in ("MAIL_TIMEOUT", "MAIL_ACTION_DELAY_SECONDS"):
        return float(value)
    if name in ("STRIPE_TIMEOUT", "READYZ_STRIPE_CACHE_SECONDS"):
        return float(value)
    if name in ("WEBHOOK_RETRY_SECONDS", "WEBHOOK_RETRY_MAX_SECONDS", "WEBHOOK_LEASE_SECONDS"):
        return float(value)
    if name in ("STRIPE_MAX_NETWORK_RETRIES", "MAX_CONTENT_LENGTH", "WEBHOOK_MAX_ATTEMPTS"):
        return int(value)
    return value


def stripe_mode(secret_key: str | None, api_base: str | None) -> str:
    """Decide sandbox / test / live from the secret key and the API base."""
    if not secret_key:
        return "sandbox"
    if secret_key.startswith(("sk_live_", "rk_live_")):
        return "live"
    if secret_key.startswith(("sk_test_", "rk_test_")):
        if api_base and not _is_stripe_host(api_base):
            return "sandbox"
        return "test"
    raise ConfigError("STRIPE_SECRET_KEY must start with sk_test_ or sk_live_ (got a key with another prefix).")


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
        db_url = "postgresql://" + db_url[len("postgres://") :]
    if db_url.startswith("postgresql://"):
        db_url = "postgresql+psycopg://" + db_url[len("postgresql://") :]
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

    _check(settings)  # before mail_settings: live mode must name its sender, not get a made-up one
    mail_settings(settings)
    _check_secret_key(settings, instance_path)
    api_settings(settings, ConfigError)
    _check_limits(settings)
    _ops_settings(settings)
    cache_settings(settings)
    return settings


def mail_settings(settings: dict[str, Any]) -> None:
    """Sandbox mode sends to the local catcher (127.0.0.1:8025) and links to
    http://127.0.0.1:5000 unless told otherwise; elsewhere ``STORE_URL`` defaults to
    ``EXTERNAL_URL``. Links in mails are built from ``STORE_URL``, never from a Host header."""
    mode = settings["STRIPE_MODE"]
    if mode == "sandbox":
        settings["MAIL_SERVER"] = settings.get("MAIL_SERVER") or SANDBOX_MAIL_SERVER
        settings["MAIL_PORT"] = settings.get("MAIL_PORT") or SANDBOX_MAIL_PORT
    elif settings.get("MAIL_SERVER") and not settings.get("MAIL_PORT"):
        settings["MAIL_PORT"] = 465 if settings.get("MAIL_USE_SSL") else 587 if settings.get("MAIL_USE_TLS") else 25
    if settings.get("MAIL_USE_TLS") and settings.get("MAIL_USE_SSL"):
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL are exclusive (STARTTLS on 587, or TLS on 465).")
    store_url = settings.get("STORE_URL") or settings.get("EXTERNAL_URL")
    if not store_url and mode != "live":  # live mode must name it (config._check)
        store_url = SANDBOX_STORE_URL
    settings["STORE_URL"] = str(store_url).rstrip("/") if store_url else None
    if not settings.get("MAIL_DEFAULT_SENDER"):
        host = urlsplit(settings["STORE_URL"] or "").hostname or "localhost"
        domain = host if "." in host and not host.replace(".", "").isdigit() else "storefront.test"
        settings["MAIL_DEFAULT_SENDER"] = f"{settings.get('STORE_NAME') or 'Storefront'} <no-reply@{domain}>"


def cache_settings(settings: dict[str, Any]) -> None:
    """The shared cache's backend: Redis at ``CACHE_REDIS_URL`` (else ``REDIS_URL``), so every
    worker sees one cache; with neither, SimpleCache in this process. Redis that doesn't answer
    within a second counts as a miss (storefront/cache.py), so a page never waits on it long."""
    url = settings.get("CACHE_REDIS_URL") or settings.get("REDIS_URL")
    if not settings.get("CACHE_TYPE"):
        settings["CACHE_TYPE"] = "RedisCache" if url else "SimpleCache"
    if settings["CACHE_TYPE"] == "RedisCache":
        settings["CACHE_REDIS_URL"] = url
        settings.setdefault("CACHE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})


def _ops_settings(settings: dict[str, Any]) -> None:
    """JSON logs in live mode, text for a console elsewhere; ``/metrics`` from loopback without
    a token in sandbox mode only (elsewhere ``METRICS_TOKEN`` or an explicit ``METRICS_ALLOW``)."""
    mode = settings["STRIPE_MODE"]
    settings["LOG_FORMAT"] = str(settings.get("LOG_FORMAT") or ("json" if mode == "live" else "text")).lower()
    if settings["LOG_FORMAT"] not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be json or text (got {settings['LOG_FORMAT']!r}).")
    if settings.get("METRICS_ALLOW") is None:
        settings["METRICS_ALLOW"] = "127.0.0.1,::1" if mode == "sandbox" else ""
    token = settings.get("METRICS_TOKEN")
    if token and len(token) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters (a random token).")


RATE_LIMIT_SETTINGS = (
    "LOGIN_LIMIT_PER_ACCOUNT",
    "LOGIN_LIMIT_PER_IP",
    "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL",
    "SIGNUP_LIMIT_PER_IP",
    "PASSWORD_RESET_LIMIT_PER_IP",
    "PASSWORD_RESET_LIMIT_PER_ACCOUNT",
    "ACCOUNT_MAIL_LIMIT_PER_ACCOUNT",
)


def _check_limits(settings: dict[str, Any]) -> None:
    """A rate limit the limiter can't read would fail every log-in: refuse it at start."""
    from limits import parse

    for name in RATE_LIMIT_SETTINGS:
        value = str(settings.get(name) or "")
        if name == "LOGIN_LIMIT_PER_ACCOUNT_GLOBAL" and value.strip().lower() in ("", "none"):
            continue
        try:
            parse(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a rate limit like '10 per hour'.") from None


def secret_key_problem(key: str | None) -> str | None:
    """Why ``key`` must not sign cookies, or None when it is fit."""
    if not key:
        return "SECRET_KEY is not set"
    if key in PUBLISHED_SECRET_KEYS:
        return "SECRET_KEY is a value published in the repository"
    if len(key.encode("utf-8")) < MIN_SECRET_KEY_BYTES:
        return f"SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes"
    if len(set(key)) < 8:
        return "SECRET_KEY repeats too few characters to be random"
    return None


def _check_secret_key(settings: dict[str, Any], instance_path: str) -> None:
    """Test and live modes need a real SECRET_KEY; sandbox mode makes one in instance/."""
    key = settings.get("SECRET_KEY")
    mode = settings["STRIPE_MODE"]
    if mode == "sandbox" and not key:
        settings["SECRET_KEY"] = sandbox_secret_key(instance_path)
        return
    problem = secret_key_problem(key)
    if problem is None:
        return
    if mode != "sandbox" or key in PUBLISHED_SECRET_KEYS:
        raise ConfigError(
            f"Refusing to start in {mode} mode: {problem}; it must be at least "
            f"{MIN_SECRET_KEY_BYTES} random bytes ({SECRET_KEY_HINT})."
        )
    log.warning("SECRET_KEY is weak (%s); fine for a local sandbox only.", problem)


def sandbox_secret_key(instance_path: str) -> str:
    """The sandbox's own random key: made once, kept in ``instance/secret_key`` (0600).

    Two processes starting together (the run script starts the sandbox and the CLI at once)
    agree on one key: the file appears complete or not at all (written aside, then linked).
    """
    folder = Path(instance_path)
    path = folder / SECRET_KEY_FILE
    for _ in range(2):
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            if secret_key_problem(existing) is not None:
                raise ConfigError(f"{path} does not hold a usable key; delete it to make a new one.")
            return existing
        folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        temp = folder / f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(key + "\n")
            try:
                os.link(temp, path)
            except FileExistsError:
                continue  # another process won: read its key
            return key
        finally:
            temp.unlink(missing_ok=True)
    raise ConfigError(f"Could not create or read {path}.")  # pragma: no cover


def live_mail_problems(settings: dict[str, Any]) -> list[str]:
    """Live mode sends receipts and password resets: it needs a real SMTP server, a sender
    address of its own and the store's public https URL for the links (no sandbox defaults)."""
    problems = []
    if not settings.get("MAIL_SERVER"):
        problems.append("MAIL_SERVER (your SMTP server) is required in live mode")
    if not settings.get("MAIL_DEFAULT_SENDER"):
        problems.append("MAIL_DEFAULT_SENDER (e.g. 'Shop <shop@example.com>') is required in live mode")
    store_url = str(settings.get("STORE_URL") or settings.get("EXTERNAL_URL") or "")
    if not store_url.startswith("https://"):
        problems.append("STORE_URL (or EXTERNAL_URL) must be the store's https:// address in live mode (mail links)")
    return problems


def _check(settings: dict[str, Any]) -> None:
    mode = settings["STRIPE_MODE"]
    publishable = settings.get("STRIPE_PUBLISHABLE_KEY") or ""
    if mode == "live":
        problems = []
        if not settings.get("STRIPE_WEBHOOK_SECRET"):
            problems.append("STRIPE_WEBHOOK_SECRET is required with a live key")
        if not publishable.startswith("pk_live_"):
            problems.append("STRIPE_PUBLISHABLE_KEY must be a pk_live_ key with a live secret key")
        key_problem = secret_key_problem(settings.get("SECRET_KEY"))
        if key_problem:
            problems.append(
                f"{key_problem}; it must be at least {MIN_SECRET_KEY_BYTES} random bytes ({SECRET_KEY_HINT})"
            )
        base = settings.get("STRIPE_API_BASE")
        if base and not _is_stripe_host(base):
            problems.append("STRIPE_API_BASE must be Stripe's own API in live mode")
        problems.extend(live_mail_problems(settings))
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
