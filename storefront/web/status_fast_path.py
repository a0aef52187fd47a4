"""A WSGI fast path for the status poll, ``GET /orders/<public_id>/status``.

The status page polls this JSON every few seconds while an order is open, and the answer is
usually "nothing new": no Stripe sync is due, so the Flask view would only read the order. This
middleware gives that answer without entering Flask: it verifies the session cookie with the
app's own signing serializer, runs ONE indexed read (the order joined to its owner, for the
header's balance, and to the owner's sign-in row the session names, which log-out deletes) and,
when the buyer is the order's owner, still signed in, and no sync is due, writes the same JSON
the view writes (``orders.status_payload``).

Everything else falls through to Flask, unchanged: no or an invalid session, a session that
Flask-Login would touch (another browser's identifier under session protection, or a
remember-me cookie without a session user), an admin looking at someone else's order, an
unknown order (404), and any order a sync is due for (the view claims the sync slot and asks
Stripe). Disabled when app-wide rate limits are configured (they must see every request) or
with ``STATUS_FAST_PATH=False``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from hashlib import sha512
from types import SimpleNamespace

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import Engine, bindparam, select

_PATH = re.compile(r"/orders/([A-Za-z0-9_-]{1,40})/status")
#: verified session cookies and rendered answers kept (each cache is emptied when full)
_CACHE_SIZE = 4096


class StatusFastPath:
    def __init__(self, app: Flask, wsgi_app: Callable):
        from ..models import Order, User, UserSession
        from ..models.order import SETTLED
        from ..services.accounts import parse_session_id, sign_in_max_age
        from ..services.purchase import SYNC_INTERVAL, SYNCABLE
        self.parse_session_id = parse_session_id
        self.app = app
        self.wsgi_app = wsgi_app
        self.cookie_name = app.config.get("SESSION_COOKIE_NAME", "session")
        # Flask's own cookie sessions only: another session interface means no fast path
        interface = app.session_interface
        self.serializer = (interface.get_signing_serializer(app)
                           if isinstance(interface, SecureCookieSessionInterface) else None)
        self.max_age = int(app.permanent_session_lifetime.total_seconds())
        login_manager = getattr(app, "login_manager", None)
        self.protection = login_manager and login_manager.session_protection
        # as the user loader: a sign-in older than this, or whose row is gone, is over
        self.login_max_age = sign_in_max_age(app.config)
        self.syncable = frozenset(SYNCABLE)
        self.settled = frozenset(SETTLED)
        self.sync_interval: timedelta = SYNC_INTERVAL
        # what web/security.py adds to Flask's answers, and no-store: the answer is personal
        from .security import NO_STORE, static_headers
        self.headers = [*static_headers(app.config), ("Cache-Control", NO_STORE)]
        # Built once, on the plain tables (no ORM annotations to adapt per row), with a bound
        # parameter, so each poll reuses the compiled statement.
        # The sign-in row is outer-joined (by its unique token, for the order's owner), so a
        # missing row reads as "signed out" and the view answers as Flask-Login decides.
        orders, users, sign_ins = Order.__table__.c, User.__table__.c, UserSession.__table__.c
        self.query = (
            select(orders.user_id, orders.public_id, orders.status, orders.amount,
                   orders.currency, orders.points, orders.entitlement, orders.failure_message,
                   orders.amount_refunded, orders.paid_at, orders.synced_at,
                   users.points_balance, sign_ins.id.label("sign_in_id"))
            .join_from(Order.__table__, User.__table__, users.id == orders.user_id)
            .outerjoin(UserSession.__table__,
                       (sign_ins.user_id == orders.user_id)
                       & (sign_ins.token == bindparam("token"))
                       & (sign_ins.created_at >= bindparam("signed_in_after")))
            .where(orders.public_id == bindparam("public_id")))
        self._engine: Engine | None = None
        # cookie value -> (session, signed at): a cookie's signature is checked once; its age
        # is checked on every use, and its sign-in row is read on every use (the query above),
        # so a log-out ends it at once. Rows -> JSON bytes: the same row, the same answer.
        self._sessions: dict[str, tuple[dict, float]] = {}
        self._answers: dict[tuple, bytes] = {}

    # -- the session, as Flask and Flask-Login would read it ----------------------------------
    def _session(self, environ: dict) -> dict | None:
        from werkzeug.http import parse_cookie
        cookies = parse_cookie(environ.get("HTTP_COOKIE", ""))
        value = cookies.get(self.cookie_name)
        if not value or self.serializer is None:
            return None
        known = self._sessions.get(value)
        if known is not None:
            session, signed_at = known
            return session if time.time() - signed_at <= self.max_age else None
        try:
            session, signed_at = self.serializer.loads(value, max_age=self.max_age,
                                                       return_timestamp=True)
        except Exception:  # noqa: BLE001 - bad signature, expired, garbage: Flask starts empty
            return None
        if len(self._sessions) >= _CACHE_SIZE:
            self._sessions.clear()
        self._sessions[value] = (session, signed_at.timestamp())
        return session

    @staticmethod
    def _identifier(environ: dict) -> str:
        """Flask-Login's ``_create_identifier`` (0.6), from the WSGI environ."""
        address = environ.get("HTTP_X_FORWARDED_FOR", environ.get("REMOTE_ADDR"))
        if address is not None:
            address = address.encode("utf-8").split(b",")[0].strip()
        agent = environ.get("HTTP_USER_AGENT")
        if agent is not None:
            agent = agent.encode("utf-8")
        return sha512(f"{address}|{agent}".encode()).hexdigest()

    def _user_id(self, environ: dict) -> tuple[int, str, int] | None:
        session = self._session(environ)
        if not session or "_user_id" not in session:
            return None
        if self.protection in ("basic", "strong") and \
                session.get("_id") != self._identifier(environ):
            return None  # Flask-Login would mark the session non-fresh (or drop it)
        if session.get("_permanent"):
            return None  # Flask refreshes a permanent session's cookie on every request
        return self.parse_session_id(session["_user_id"], self.login_max_age)

    # -- WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match and environ.get("REQUEST_METHOD") == "GET" and environ.get("HTTP_COOKIE"):
            answer = self._answer(environ, match.group(1))
            if answer is not None:
                start_response("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(answer))),
                                          ("Vary", "Cookie"), *self.headers])
                return [answer]
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ: dict, public_id: str) -> bytes | None:
        signed_in = self._user_id(environ)
        if signed_in is None:
            return None
        user_id, token, _signed_in_at = signed_in
        if self._engine is None:
            with self.app.app_context():
                from ..extensions import db
                self._engine = db.engine
        from ..models.base import utcnow
        with self._engine.connect() as conn:
            row = conn.execute(self.query, {"public_id": public_id, "token": token,
                                            "signed_in_after": utcnow() - self.login_max_age}).first()
        if row is None or row.user_id != user_id:
            return None  # 404, or an admin: the view decides
        if row.sign_in_id is None:
            return None  # signed out since (the view answers as Flask-Login decides)
        if row.status in self.syncable and (
                row.synced_at is None or row.synced_at < utcnow() - self.sync_interval):
            return None  # a sync is due: the view asks Stripe
        key = (environ.get("SCRIPT_NAME", ""), *row)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._payload(environ, row)
            if len(self._answers) >= _CACHE_SIZE:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _payload(self, environ: dict, row) -> bytes:
        from ..services.purchase import PAYABLE
        from .orders import BUYER_STATUS, buyer_message
        order = SimpleNamespace(status=row.status, amount=row.amount, currency=row.currency,
                                points=row.points, entitlement=row.entitlement,
                                failure_message=row.failure_message,
                                amount_refunded=row.amount_refunded)
        pay_url = (f"{environ.get('SCRIPT_NAME', '')}/orders/{row.public_id}/pay"
                   if row.status in PAYABLE else None)
        payload = {"status": BUYER_STATUS[row.status], "order_status": row.status,
                   "message": buyer_message(order), "settled": row.status in self.settled,
                   "points_credited": row.points if row.paid_at else 0, "pay_url": pay_url,
                   "points_balance": row.points_balance}
        provider = self.app.json  # as jsonify formats it: compact unless debugging
        compact = getattr(provider, "compact", None)  # DefaultJSONProvider's setting
        pretty = (compact is None and self.app.debug) or compact is False
        layout = {"indent": 2} if pretty else {"separators": (",", ":")}
        return (provider.dumps(payload, **layout) + "\n").encode()


def install(app: Flask) -> None:
    if not app.config.get("STATUS_FAST_PATH", True):
        return
    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return
    app.wsgi_app = StatusFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
