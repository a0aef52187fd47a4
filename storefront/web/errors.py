"""One handler for every HTTP error: HTML in the site's look, or JSON for API clients.

A :class:`~storefront.services.errors.ServiceError` raised by a view (views don't catch them)
becomes the JSON error shape ``{"error": {"code", "message", "type"}}`` with its status for API
clients, and for a form a flash of its message and a redirect to where the view said with
:func:`redirect_on_error`; a view that said nothing answers the error page with its status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from ..services.errors import ServiceError
from ..stripe_gateway import GatewayError
from .api_guard import retry_after_seconds
from .helpers import wants_json

log = logging.getLogger(__name__)

# Translated when shown (lazy): the page's title and message, and the JSON error's message.
MESSAGES = {
    400: ("bad_request", _l("The request could not be understood.")),
    401: ("unauthorized", _l("Please log in to continue.")),
    403: ("forbidden", _l("You don't have access to this page.")),
    404: ("not_found", _l("We couldn't find that page.")),
    405: ("method_not_allowed", _l("That action isn't allowed here.")),
    413: ("payload_too_large", _l("That request is too large.")),
    429: ("rate_limit_exceeded", _l("Too many requests. Please slow down and try again in a minute.")),
    500: ("internal_error", _l("Something went wrong on our side. We've been notified; please try again.")),
}
TITLES = {
    400: _l("Bad request"),
    401: _l("Log in required"),
    403: _l("Forbidden"),
    404: _l("Page not found"),
    405: _l("Not allowed"),
    413: _l("Too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong"),
    503: _l("Temporarily unavailable"),
}


def error_response(status: int, code: str | None = None, message: str | None = None, error_type: str | None = None):
    default_code, default_message = MESSAGES.get(status, ("error", _l("Something went wrong.")))
    code = code or default_code
    message = str(message or default_message)
    error_type = error_type or ("api_error" if status >= 500 else "invalid_request_error")
    if wants_json():
        return jsonify(error={"code": code, "message": message, "type": error_type}), status
    return render_template(
        "errors/error.html", status=status, title=str(TITLES.get(status) or _("Error")), message=message
    ), status


View = TypeVar("View", bound=Callable[..., Any])
#: the attribute :func:`redirect_on_error` sets on a view (copied by ``functools.wraps``)
_TARGET = "service_error_redirect"


@dataclass(frozen=True)
class RedirectTarget:
    endpoint: str
    args: tuple[str, ...]  # the view's URL arguments the endpoint takes
    category: str
    not_found_page: bool


def redirect_on_error(
    endpoint: str, *args: str, category: str = "error", not_found_page: bool = True
) -> Callable[[View], View]:
    """Say where a form goes back to when the view raises a ``ServiceError``: a flash of the
    error's message (``category``) and a redirect to ``endpoint``, given the view's URL
    arguments named in ``args`` (``@redirect_on_error("admin.order", "public_id")``).

    A 404 shows the not-found page instead (what is not the buyer's is not there), unless
    ``not_found_page=False``. JSON clients get the JSON error shape either way. The decorator
    only marks the view; the app's ``ServiceError`` handler reads the mark."""
    target = RedirectTarget(endpoint, args, category, not_found_page)

    def mark(view: View) -> View:
        setattr(view, _TARGET, target)
        return view

    return mark


def _redirect_target() -> RedirectTarget | None:
    view = current_app.view_functions.get(request.endpoint or "")
    target = getattr(view, _TARGET, None)
    return target if isinstance(target, RedirectTarget) else None


def service_error_response(err: ServiceError) -> ResponseReturnValue:
    """JSON for API clients; else a flash and a redirect back, or the error page."""
    if wants_json():
        return error_response(err.status, err.code, err.message)
    target = _redirect_target()
    if err.status == 404 and (target is None or target.not_found_page):
        return error_response(404)  # the not-found page, as ``abort(404)`` shows it
    if target is None:
        return error_response(err.status, err.code, err.message)
    flash(err.message, target.category)
    view_args = request.view_args or {}
    return redirect(url_for(target.endpoint, **{name: view_args[name] for name in target.args}))


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(err: ServiceError) -> ResponseReturnValue:
        return service_error_response(err)

    @app.errorhandler(CSRFError)
    def csrf_error(err: CSRFError):
        return error_response(
            400,
            "csrf_failed",
            _("Your form expired or was sent from another site. Please go back, reload the page and try again."),
        )

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(err: RateLimitExceeded):
        body, status = error_response(429, "rate_limit_exceeded", None, "rate_limit_error")
        return body, status, {"Retry-After": str(retry_after_seconds())}

    @app.errorhandler(GatewayError)
    def gateway_error(err: GatewayError):
        return error_response(
            err.http_status if err.http_status >= 400 else 502, err.code, err.user_message, "payment_provider_error"
        )

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        status = err.code or 500
        code, message = MESSAGES.get(status, ("error", err.description))
        if status < 500 and err.description and err.description != type(err).description:
            message = err.description  # a message written for this case (abort(400, "…"))
        # the exception's own headers go along (a 405's ``Allow``, RFC 9110), not its HTML type
        headers = [(name, value) for name, value in err.get_headers() if name.lower() != "content-type"]
        body, status = error_response(status, code, message)
        return body, status, headers

    @app.errorhandler(Exception)
    def unhandled(err: Exception):
        if isinstance(err, HTTPException):  # pragma: no cover - handled above
            return http_error(err)
        log.exception("unhandled error")
        return error_response(500)

    @app.errorhandler(InternalServerError)
    def internal(err):
        return error_response(500)
