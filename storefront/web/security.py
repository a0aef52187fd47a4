"""Security headers, trusted hosts and request limits, in one place.

* Every response carries a Content-Security-Policy fit for Stripe.js and nothing else (no
  ``'unsafe-inline'``: our pages have no inline script or style), ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff`` and a ``Referrer-Policy``; live mode adds HSTS.
* ``Cache-Control: no-store`` on every response to a signed-in user (the pay page carries a
  PaymentIntent's client secret; account pages carry personal data).
* A ``Host`` header that is not in ``TRUSTED_HOSTS`` gets a plain 400 before anything else runs
  (so no URL is ever built from it); ``EXTERNAL_URL`` is where absolute URLs point.
* Bodies over ``MAX_CONTENT_LENGTH`` get 413; JSON nested too deeply to parse gets 400.

The two WSGI fast paths answer without running a view: the page cache replays the headers Flask
produced for the page; the status fast path sends :func:`static_headers` plus its own
(``order_status.fast_path_headers``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, current_app, g, request, session
from werkzeug.exceptions import BadRequest
from werkzeug.wsgi import get_host

from . import params

log = logging.getLogger(__name__)

STRIPE_JS = ("https://js.stripe.com", "https://*.js.stripe.com")
STRIPE_FRAMES = (*STRIPE_JS, "https://hooks.stripe.com")
STRIPE_API = ("https://api.stripe.com",)
#: our forms answer 303 to Stripe's hosted pages (Checkout, the billing portal); browsers
#: check a form's redirects against form-action too
STRIPE_HOSTED_PAGES = ("https://checkout.stripe.com", "https://billing.stripe.com")
DEFAULT_TRUSTED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
NO_STORE = "no-store"


# --- headers ----------------------------------------------------------------------------------------


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def sandbox_style_hash() -> str | None:
    """The CSP hash of the one <style> element the bundled sandbox's Stripe.js injects (the
    sandbox knows its own stylesheet), or None when the sandbox package is not installed."""
    try:
        from stripe_sandbox.browser import stripe_js_style_hash
    except ImportError:  # pragma: no cover - a deployment may ship without the sandbox
        return None
    return stripe_js_style_hash()


def content_security_policy(config: dict[str, Any] | Any) -> str:
    script = ["'self'", *STRIPE_JS]
    frame = list(STRIPE_FRAMES)
    connect = ["'self'", *STRIPE_API]
    form = ["'self'", *STRIPE_HOSTED_PAGES]
    style = ["'self'"]
    if config.get("STRIPE_MODE") == "sandbox":
        sandbox = _origin(config.get("STRIPE_API_BASE"))
        if sandbox:
            for directive in (script, frame, connect, form):
                directive.append(sandbox)
        if (style_hash := sandbox_style_hash()) is not None:
            style.append(style_hash)
    directives = {
        "default-src": ["'self'"],
        "script-src": script,
        "style-src": style,
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": connect,
        "frame-src": frame,
        "form-action": form,
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def static_headers(config: dict[str, Any] | Any) -> list[tuple[str, str]]:
    """The headers every response gets, whoever answers (Flask or a WSGI fast path)."""
    headers = [
        ("Content-Security-Policy", content_security_policy(config)),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin-allow-popups"),
    ]
    if config.get("STRIPE_MODE") == "live":
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


def _signed_in() -> bool:
    user = g.get("_login_user")  # Flask-Login's loaded user, if a view asked for it
    if user is not None and user.is_authenticated:
        return True
    remember = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    return "_user_id" in session or bool(request.cookies.get(remember))


# --- requests -----------------------------------------------------------------------------------------


class StorefrontRequest(Request):
    """``get_json`` answers 400 (not 500) for JSON nested deeper than the parser can go."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any | None:
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            if silent:
                return None
            raise BadRequest("The JSON body is nested too deeply.") from None


#: a signed Stripe event is checked by the webhook service itself (its body is read under its own size limit)
_RAW_BODY_ENDPOINTS = frozenset({"webhooks.receive"})


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 50:  # deeper than any body we accept; the view refuses it
        return False
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def refuse_nul_characters() -> None:
    """400 for a NUL anywhere in the path, the query, a form or a JSON body: no page of ours takes
    one, and PostgreSQL refuses it in a text value (a 500 deep inside a query otherwise)."""
    if "\x00" in request.path or _has_nul(list(request.args.items(multi=True))):
        raise BadRequest("The address contains a NUL character.")
    if request.endpoint in _RAW_BODY_ENDPOINTS:
        return
    if _has_nul(list(request.form.items(multi=True))) or (request.is_json and _has_nul(request.get_json(silent=True))):
        raise BadRequest("The form contains a NUL character.")


def trusted_hosts(config: dict[str, Any] | Any) -> list[str]:
    """``TRUSTED_HOSTS`` (a list or a comma-separated string), else localhost plus the host of
    ``EXTERNAL_URL``."""
    configured = config.get("TRUSTED_HOSTS")
    if isinstance(configured, str):
        hosts = [h.strip() for h in configured.split(",") if h.strip()]
    elif configured:
        hosts = list(configured)
    else:
        hosts = list(DEFAULT_TRUSTED_HOSTS)
    external = urlsplit(config.get("EXTERNAL_URL") or "").hostname
    if external and external not in hosts:
        hosts.append(external)
    return hosts


class HostGuard:
    """Outermost WSGI layer: a request whose ``Host`` is not trusted gets a plain-text 400
    (no template, no URL building, no fast path) and never reaches the app."""

    def __init__(self, wsgi_app: Callable, hosts: list[str], headers: list[tuple[str, str]]):
        self.wsgi_app = wsgi_app
        self.hosts = hosts
        self.headers = headers

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            get_host(environ, self.hosts)
        except BadRequest:  # werkzeug's SecurityError
            body = b"Bad request: unknown host.\n"
            start_response(
                "400 BAD REQUEST",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", NO_STORE),
                    *self.headers,
                ],
            )
            return [body]
        return self.wsgi_app(environ, start_response)


def register(app: Flask) -> None:
    """Before the blueprints: strict ``<int:…>`` ids, the request class, headers."""
    params.install(app)
    app.request_class = StorefrontRequest
    app.config["TRUSTED_HOSTS"] = trusted_hosts(app.config)
    headers = static_headers(app.config)
    app.before_request(refuse_nul_characters)

    @app.after_request
    def security_headers(response):
        for name, value in headers:
            response.headers.setdefault(name, value)
        if request.endpoint != "static" and _signed_in():
            response.headers["Cache-Control"] = NO_STORE
        return response


def install_host_guard(app: Flask) -> None:
    """After every other WSGI layer, so the guard runs first."""
    guard = HostGuard(app.wsgi_app, app.config["TRUSTED_HOSTS"], static_headers(app.config))
    app.wsgi_app = guard  # type: ignore[method-assign]
