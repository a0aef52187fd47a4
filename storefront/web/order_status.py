"""The order status poll's answer, for its two doors: the Flask view (``orders.status``) and the
WSGI fast path (``status_fast_path``). Both use the functions here, so they cannot drift apart.

The order page embeds a **status token** in a ``data-`` attribute; its script sends it as
``Authorization: Bearer <token>``. The token is signed with the app's ``SECRET_KEY`` (and its
fallbacks) under a salt of its own, lasts a day (a page reload gives a fresh one) and names the
order, its buyer and the buyer's sign-in (the ``user_sessions`` row). It is checked with ONE
indexed read (:func:`read`): the order, its owner's balance, and that sign-in row, which log-out,
a password change or an admin's "sign out everywhere" deletes -- so a logged-out page's poll is
no longer answered by the token, and a token never reads another order (its order id must be
the URL's). Without a usable token the view falls back to the session, as any page.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from flask import Flask
from flask_babel import gettext
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import Connection, Row, bindparam, select

from ..models import Order, User, UserSession
from ..models.base import utcnow
from ..models.order import PAYABLE, SETTLED, SYNCABLE
from ..services.purchase import SYNC_INTERVAL
from .helpers import format_money
from .security import NO_STORE, static_headers

TOKEN_SALT = "storefront.order-status"  # noqa: S105 - a salt, not a secret
TOKEN_MAX_AGE = timedelta(days=1)
EXTENSION_KEY = "order_status_tokens"
#: verified tokens kept (emptied when full): a token's signature is checked once, its age always
_CACHE_SIZE = 4096

#: the seed front-end contract's statuses, from our order states
BUYER_STATUS = {
    "pending": "unpaid",
    "requires_action": "requires_action",
    "processing": "processing",
    "paid": "paid",
    "failed": "failed",
    "canceled": "canceled",
    "expired": "expired",
    "refunded": "refunded",
    "partially_refunded": "refunded",
    "disputed": "paid",
}


# --- the token -------------------------------------------------------------------------------


class StatusClaim(NamedTuple):
    """What a valid token says: this buyer, signed in as this row, may poll this order."""

    public_id: str
    user_id: int
    sign_in_id: int


class StatusTokens:
    """Issues and checks status tokens (one instance per app: ``tokens(app)``)."""

    def __init__(self, config: Mapping[str, Any]):
        keys = [*(config.get("SECRET_KEY_FALLBACKS") or ()), config["SECRET_KEY"]]  # newest last
        self.serializer = URLSafeTimedSerializer(keys, salt=TOKEN_SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self.max_age = int(TOKEN_MAX_AGE.total_seconds())
        self._verified: dict[str, tuple[StatusClaim, float]] = {}
        self._lock = threading.Lock()

    def issue(self, public_id: str, user_id: int, sign_in_id: int) -> str:
        return self.serializer.dumps([public_id, user_id, sign_in_id])

    def verify(self, token: str | None, public_id: str) -> StatusClaim | None:
        """The claim of a well-signed, unexpired token for ``public_id``; None for anything else
        (no token, forged, expired, another order's)."""
        if not token:
            return None
        known = self._verified.get(token)
        if known is None:
            try:
                value, signed_at = self.serializer.loads(token, max_age=self.max_age, return_timestamp=True)
                claim = StatusClaim(str(value[0]), int(value[1]), int(value[2]))
            except (BadData, TypeError, ValueError, IndexError, KeyError):
                return None
            known = (claim, signed_at.timestamp())
            with self._lock:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.clear()
                self._verified[token] = known
        claim, signed_at = known
        if claim.public_id != public_id or time.time() - signed_at > self.max_age:
            return None
        return claim


def tokens(app: Flask) -> StatusTokens:
    found = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = app.extensions[EXTENSION_KEY] = StatusTokens(app.config)
    return found


def token_from_environ(environ: Mapping[str, Any]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


# --- the one read ----------------------------------------------------------------------------


def _status_query():
    """Built once, on the plain tables (no ORM work per row), with bound parameters: the order,
    its owner's balance, and the token's sign-in row if it is still the owner's and current."""
    orders, users, sign_ins = Order.__table__.c, User.__table__.c, UserSession.__table__.c
    return (
        select(
            orders.id,
            orders.user_id,
            orders.public_id,
            orders.status,
            orders.amount,
            orders.currency,
            orders.points,
            orders.entitlement,
            orders.failure_message,
            orders.amount_refunded,
            orders.paid_at,
            orders.synced_at,
            users.points_balance,
            sign_ins.id.label("sign_in_id"),
        )
        .join_from(Order.__table__, User.__table__, users.id == orders.user_id)
        .outerjoin(
            UserSession.__table__,
            (sign_ins.id == bindparam("sign_in_id"))
            & (sign_ins.user_id == orders.user_id)
            & (sign_ins.created_at >= bindparam("signed_in_after")),
        )
        .where(orders.public_id == bindparam("public_id"))
    )


STATUS_QUERY = _status_query()


def read(connection: Connection, claim: StatusClaim, sign_in_age: timedelta) -> Row | None:
    """The order the claim names, if the claim still holds: its buyer owns it and is still signed
    in as the claimed sign-in (not logged out, not older than ``sign_in_age``). One query."""
    row = connection.execute(
        STATUS_QUERY,
        {"public_id": claim.public_id, "sign_in_id": claim.sign_in_id, "signed_in_after": utcnow() - sign_in_age},
    ).first()
    if row is None or row.user_id != claim.user_id or row.sign_in_id is None:
        return None
    return row


def sync_due(status: str, synced_at: datetime | None) -> bool:
    """Whether a poll should ask Stripe (``purchase.sync_if_due`` decides for good)."""
    return status in SYNCABLE and (synced_at is None or synced_at < utcnow() - SYNC_INTERVAL)


# --- the answer ------------------------------------------------------------------------------


class OrderFacts(Protocol):
    """What :func:`buyer_message` reads: an :class:`Order`, or :func:`read`'s row."""

    status: str
    amount: int
    currency: str
    points: int
    entitlement: str | None
    failure_message: str | None
    amount_refunded: int


class StatusFacts(OrderFacts, Protocol):
    """What :func:`status_payload` reads."""

    public_id: str
    paid_at: datetime | None


def buyer_message(order: OrderFacts) -> str:
    """The status in the buyer's words (also answered by the fast path, outside any request:
    there gettext answers in English)."""
    amount = format_money(order.amount, order.currency)
    status = order.status
    if status == "pending":
        return gettext("We're waiting for your payment of %(amount)s.", amount=amount)
    if status == "requires_action":
        return gettext("Your bank asks you to confirm this payment. Finish authentication to continue.")
    if status == "processing":
        return gettext(
            "Your payment of %(amount)s is processing. Bank debits can take a while; "
            "we'll add your points as soon as it clears.",
            amount=amount,
        )
    if status == "paid":
        return _paid_message(order, amount)
    if status == "failed":
        reason = order.failure_message or gettext("The payment was declined.")
        return gettext("%(reason)s You have not been charged. You can try again with another card.", reason=reason)
    if status == "canceled":
        return gettext("This order was canceled. You have not been charged.")
    if status == "expired":
        return gettext("This checkout expired before it was paid. You have not been charged.")
    if status in ("refunded", "partially_refunded"):
        refunded = format_money(order.amount_refunded, order.currency)
        return gettext("%(refunded)s of %(amount)s was refunded.", refunded=refunded, amount=amount)
    if status == "disputed":
        return gettext("This payment is disputed with your bank; its points are on hold.")
    return status


def _paid_message(order: OrderFacts, amount: str) -> str:
    message = gettext("Payment of %(amount)s received.", amount=amount)
    if order.points:
        message += " " + gettext("%(points)s points were added to your balance.", points=f"{order.points:,}")
    if order.entitlement:
        message += " " + gettext("%(entitlement)s features are yours forever.", entitlement=order.entitlement.title())
    return message


def status_payload(order: StatusFacts, pay_url: Callable[[str], str]) -> dict[str, Any]:
    """The status as the page's script reads it; ``pay_url(public_id)`` is the pay page's URL
    (Flask's ``url_for`` in a view, the URL map's adapter in the fast path)."""
    return {
        "status": BUYER_STATUS[order.status],
        "order_status": order.status,
        "message": buyer_message(order),
        "settled": order.status in SETTLED,
        "points_credited": order.points if order.paid_at else 0,
        "pay_url": pay_url(order.public_id) if order.status in PAYABLE else None,
    }


def poll_body(order: StatusFacts, points_balance: int | None, pay_url: Callable[[str], str]) -> bytes:
    """The poll's JSON bytes, whoever answers: the status and the viewer's balance (for the
    header's chip); compact, keys sorted, one trailing newline."""
    payload = status_payload(order, pay_url)
    payload["points_balance"] = points_balance
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode() + b"\n"


#: the poll's own headers (besides its length): JSON, and personal, so never stored
POLL_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", NO_STORE))


def fast_path_headers(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The headers of an answer given without Flask: the poll's own, and the ones Flask's
    ``after_request`` adds to every response (``security.static_headers``)."""
    return [*POLL_HEADERS, *static_headers(config)]
