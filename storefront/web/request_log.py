"""One log line and the HTTP metrics for every request, whoever answers it.

:class:`RequestObserver` is the outermost WSGI layer, so the requests the fast paths answer
without Flask (the catalog page cache, the status poll) and the host guard's refusals are
counted too. It gives each request an id -- the caller's ``X-Request-Id`` when it is a sane
token (a load balancer's), else a new one -- echoed in the response's ``X-Request-Id`` and
carried by every log record of the request (``log_setup``'s context).

The route is the URL rule Flask matched (``/orders/<public_id>``), never the raw path: bounded
labels, and no query string (Stripe's return URL carries a client secret) reaches a log. A
request Flask never saw is matched against the URL map here. The user id (never the session's
value, which holds a sign-in token) is added by a teardown hook when Flask-Login loaded the user,
the order id from the view's ``public_id``. Probes (``/healthz``, ``/readyz``, ``/metrics``) log
at DEBUG whatever they answer (a failing ``/readyz`` logs its own WARNING), everything else at
INFO (5xx at ERROR).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter

from .. import log_setup, metrics

log = logging.getLogger("storefront.request")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "<unmatched>"
#: a WSGI layer that answers without Flask (a fast path) puts its URL rule here: no matching
ROUTE_KEY = "storefront.route"


def request_id_from(environ: dict[str, Any]) -> str:
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()


def rule_of(app: Flask, endpoint: str) -> str:
    """The URL rule of ``endpoint`` (what a fast path answering for it puts at :data:`ROUTE_KEY`)."""
    return str(next(iter(app.url_map.iter_rules(endpoint))).rule)


class RequestObserver:
    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], url_map: Map):
        self.wsgi_app = wsgi_app
        self.url_map = url_map
        self._adapter: MapAdapter | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ)
        status: list[int] = [500]

        def observed_start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(code[:3])
            headers.append(("X-Request-Id", request_id))
            return start_response(code, headers, exc_info)

        fields = {"request_id": request_id}
        token = log_setup.enter(fields)
        try:
            return self.wsgi_app(environ, observed_start)
        finally:
            try:
                self._finish(environ, fields, status[0], time.perf_counter() - started)
            finally:
                log_setup.leave(token)

    def _finish(self, environ: dict[str, Any], fields: dict[str, Any], status: int, seconds: float) -> None:
        method = environ.get("REQUEST_METHOD", "")
        route = self._route(environ)
        metrics.observe_request(route, method, status, seconds)
        level = logging.DEBUG if route in QUIET_ROUTES else logging.ERROR if status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            line = {"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 2)}
            line.update(fields)
            log_setup.emit(log, level, f"{method} {route} {status}", line)

    def _route(self, environ: dict[str, Any]) -> str:
        answered: str | None = environ.get(ROUTE_KEY)  # a fast path said which rule it answered
        if answered is not None:
            return answered
        flask_request = environ.get("werkzeug.request")  # set by the request Flask made, if any
        if flask_request is not None:
            rule = getattr(flask_request, "url_rule", None)
            return rule.rule if rule is not None else UNMATCHED
        if self._adapter is None:  # the host guard refused: match the path as Flask would
            self._adapter = self.url_map.bind("localhost")
        try:
            rule, _ = self._adapter.match(
                path_info=environ.get("PATH_INFO") or "/", method=environ.get("REQUEST_METHOD"), return_rule=True
            )
        except HTTPException:
            return UNMATCHED
        return str(rule.rule)


def _note_user_and_order(_exc: BaseException | None) -> None:
    user = g.get("_login_user")  # only when something loaded the user: no query for the log
    if user is not None and getattr(user, "is_authenticated", False):
        log_setup.bind(user_id=user.id)
    public_id = (request.view_args or {}).get("public_id")
    if isinstance(public_id, str) and public_id.startswith("ord_"):
        log_setup.bind(order_id=public_id)


def register(app: Flask) -> None:
    app.teardown_request(_note_user_and_order)


def install(app: Flask) -> None:
    """The outermost WSGI layer (after every other one)."""
    app.wsgi_app = RequestObserver(app.wsgi_app, app.url_map)  # type: ignore[method-assign]
