"""Storefront: a small Flask shop selling plans and points packs through Stripe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ConfigError", "create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` overrides settings read from the environment."""
    app = Flask(
        __name__,
        instance_path=str((config or {}).get("INSTANCE_PATH") or ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(load_settings(instance_path=app.instance_path, overrides=config))
    register_logging(app)
    register_extensions(app)
    register_i18n(app)
    register_queue(app)
    register_security(app)
    register_stripe(app)
    register_blueprints(app)
    register_template_helpers(app)
    register_errorhandlers(app)
    register_commands(app)
    register_wsgi_layers(app)
    return app


def register_logging(app: Flask) -> None:
    """``storefront.*`` logs in ``LOG_FORMAT`` (JSON lines or text), one line per request."""
    from . import log_setup
    from .web import request_log

    log_setup.configure(app.config)
    request_log.register(app)


def register_extensions(app: Flask) -> None:
    from . import models  # noqa: F401  (register the tables on the metadata)
    from .extensions import cache, csrf, db, limiter, login_manager, migrate

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    cache.init_app(app)
    login_manager.init_app(app)
    from . import mailer  # Flask-Mailman (SMTP settings read when a mail is sent)

    mailer.init_app(app)
    login_manager.login_view = "auth.login"
    from flask_babel import lazy_gettext

    login_manager.login_message = lazy_gettext("Please log in to continue.")
    login_manager.localize_callback = str  # the lazy string, in the request's language
    login_manager.login_message_category = "info"
    # "strong": a session cookie replayed from another address or browser is dropped, with
    # the remember-me cookie of that request.
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str):  # the session's or the remember-me cookie's User.get_id()
        from .services.accounts import sign_in_max_age, user_for_session
        from .services.uow import read_then_release

        user = user_for_session(user_id, sign_in_max_age(app.config))
        read_then_release()  # the view starts with no transaction open (it may call Stripe)
        return user


def register_i18n(app: Flask) -> None:
    """Flask-Babel: ``_``/``{% trans %}`` in templates, the catalogs in ``translations/``."""
    from . import i18n

    i18n.init_app(app)


def register_queue(app: Flask) -> None:
    """The task queue (Huey), built from the settings; its tasks run in this app's context."""
    from . import jobs

    jobs.init_app(app)


def register_security(app: Flask) -> None:
    """Headers, trusted hosts, strict ids and JSON limits (before the blueprints register)."""
    from .web import security

    security.register(app)


def register_stripe(app: Flask) -> None:
    from .stripe_gateway import init_gateway

    init_gateway(app)


def register_blueprints(app: Flask) -> None:
    from .web import account, admin, api, auth, guest, orders, pay, shop, webhooks

    for blueprint in (shop.bp, auth.bp, account.bp, orders.bp, guest.bp, pay.bp, api.bp, webhooks.bp, admin.bp):
        app.register_blueprint(blueprint)
    from .web import account_billing  # saved cards, subscriptions, invoices

    app.register_blueprint(account_billing.bp)
    from .web import ops  # /healthz, /readyz, /metrics

    ops.init_app(app)
    from .web import dev_mail  # /dev/mail: the caught mail, in sandbox mode only

    dev_mail.init_app(app)
    from .web import api_docs  # /api/openapi.json and /api/docs: the API's contract

    api_docs.init_app(app)


def register_template_helpers(app: Flask) -> None:
    from .web.helpers import format_money

    app.add_template_filter(format_money, "money")

    @app.context_processor
    def stripe_context() -> dict[str, Any]:
        return {
            "stripe_mode": app.config["STRIPE_MODE"],
            "show_test_banner": app.config["STRIPE_MODE"] != "live",
        }


def register_errorhandlers(app: Flask) -> None:
    from .web.errors import register

    register(app)


def register_wsgi_layers(app: Flask) -> None:
    """The WSGI layers around Flask, innermost first: the anonymous catalog cache (replays
    Flask's finished response), the status poll's fast path (its token, no sync due), Stripe's
    webhook deliveries (acknowledged without Flask), the host guard (an untrusted Host never
    reaches the others), the request log (request id, metrics and one log line for every answer,
    the guard's refusals included), and outermost, behind ``TRUSTED_PROXY_COUNT`` proxies,
    werkzeug's ProxyFix (every layer sees the client's address)."""
    from .services.catalog import catalog_rows
    from .web import page_cache, proxies, request_log, security, status_fast_path, webhooks

    page_cache.install(app, catalog_rows)
    status_fast_path.install(app)
    webhooks.install(app)
    security.install_host_guard(app)
    request_log.install(app)
    proxies.install(app)


def register_commands(app: Flask) -> None:
    from .cli import register

    register(app)
    try:
        from stripe_sandbox.cli import sandbox_cli
    except ImportError:  # pragma: no cover - the sandbox ships with the repo
        app.logger.debug("sandbox CLI not available")
    else:
        app.cli.add_command(sandbox_cli)
