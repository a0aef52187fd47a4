"""A WSGI fast path for the status poll, ``GET /orders/<public_id>/status``.

The order page polls this JSON every few seconds while an order is open, and the answer is
usually "nothing new": no Stripe sync is due, so the Flask view would only read the order. This
middleware gives that answer without entering Flask, with the view's own functions
(``web/order_status.py``): it checks the page's status token (``Authorization: Bearer``), runs
the same ONE indexed read (the order, its owner's balance, the token's sign-in row) and, when
the token still holds and no sync is due, writes the bytes the view would write, with the
headers the view's response gets (the poll's own and ``security.static_headers``).

It reads no session cookie and nothing of Flask-Login's. Everything else falls through to
Flask, unchanged: no token or one that does not verify (the view then asks the session), a
token whose buyer logged out or no longer owns the order, an unknown order, and any order a
sync is due for (the view claims the sync slot and asks Stripe). Disabled when app-wide rate
limits are configured (they must see every request) or with ``STATUS_FAST_PATH=False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial

from flask import Flask
from sqlalchemy import Connection, Engine, Row
from werkzeug.routing import MapAdapter

from .. import log_setup
from ..extensions import db
from ..services.accounts import sign_in_max_age
from . import order_status, request_log

_PATH = re.compile(r"/orders/([A-Za-z0-9_-]{1,40})/status")
#: rendered answers kept (emptied when full): the same row, the same bytes
_CACHE_SIZE = 4096


class StatusFastPath:
    def __init__(self, app: Flask, wsgi_app: Callable):
        self.app = app
        self.wsgi_app = wsgi_app
        self.tokens = order_status.tokens(app)
        self.sign_in_age = sign_in_max_age(app.config)
        self.headers = order_status.fast_path_headers(app.config)
        self._engine: Engine | None = None
        self._urls: dict[str, MapAdapter] = {}
        self._answers: dict[tuple, bytes] = {}
        self.route = request_log.rule_of(app, "orders.status")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match and environ.get("REQUEST_METHOD") == "GET" and "HTTP_AUTHORIZATION" in environ:
            claim = self.tokens.verify(order_status.token_from_environ(environ), match.group(1))
            answer = None if claim is None else self._answer(environ, claim)
            if answer is not None and claim is not None:
                environ[request_log.ROUTE_KEY] = self.route  # the request log needs no matching
                log_setup.bind(user_id=claim.user_id, order_id=claim.public_id)  # as the view's line has
                start_response("200 OK", [*self.headers, ("Content-Length", str(len(answer)))])
                return [answer]
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ: dict, claim: order_status.StatusClaim) -> bytes | None:
        """The poll's bytes, or None when the view must answer."""
        with self._connect() as conn:
            row = order_status.read(conn, claim, self.sign_in_age)
        if row is None or order_status.sync_due(row.status, row.synced_at):
            return None
        script_name = environ.get("SCRIPT_NAME", "")
        key = (script_name, *row)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._render(row, script_name)
            if len(self._answers) >= _CACHE_SIZE:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _render(self, row: Row, script_name: str) -> bytes:
        urls = self._urls.get(script_name)
        if urls is None:  # Flask's own URL map, as url_for would build the pay link
            urls = self._urls[script_name] = self.app.url_map.bind("", script_name=script_name or "/")
        return order_status.poll_body(row, row.points_balance, partial(_build_pay_url, urls))

    def _connect(self) -> Connection:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        return self._engine.connect()


def _build_pay_url(urls: MapAdapter, public_id: str) -> str:
    return urls.build("pay.page", {"public_id": public_id})


def install(app: Flask) -> None:
    if not app.config.get("STATUS_FAST_PATH", True):
        return
    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return
    app.wsgi_app = StatusFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
