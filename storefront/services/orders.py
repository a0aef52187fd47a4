"""The order lock and the order state machine.

Everything that changes an order -- a webhook, the status page's sync, the buyer leaving
Checkout, a refund -- first takes the order's lock here, as the first statement of its
transaction: an UPDATE, which on PostgreSQL locks the row and on SQLite takes the write lock, so
two callers for one order run one after the other. Then the order only moves along
``models.order.TRANSITIONS`` (a late ``payment_failed`` cannot undo ``paid``), and each move is
recorded as an :class:`OrderTransition` naming its cause.

What a move *grants* (points, the Lifetime entitlement) is not decided here: a move that pays an
order goes through :func:`.fulfilment.advance`, which moves and then delivers.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import InstrumentedAttribute

from .. import log_setup, metrics
from ..extensions import db
from ..models import Order, OrderTransition

log = logging.getLogger(__name__)


def lock_order(order_id: int) -> Order:
    """Take the order's lock (first statement of the transaction) and return it fresh."""
    order = lock_where(Order.id, order_id)
    if order is None:  # callers pass the id of an order they have read; orders are never deleted
        raise NoResultFound(f"order {order_id} not found")
    return order


def lock_where(column: InstrumentedAttribute[Any], value: object) -> Order | None:
    """Lock the order whose ``column`` is ``value`` and load it fresh, in one statement: an
    UPDATE … RETURNING the row (a row lock on PostgreSQL, the write lock on SQLite)."""
    order = db.session.scalars(
        update(Order).where(column == value).values(lock_version=Order.lock_version + 1).returning(Order),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).first()
    if order is not None:
        log_setup.bind(order_id=order.public_id)  # the request's or job's log line names the order
    return order


def lock_matching(
    *,
    payment_intent: str | None = None,
    session: str | None = None,
    charge: str | None = None,
    public_id: str | None = None,
) -> Order | None:
    """The order a Stripe object is about -- by the first of its ids that matches -- locked."""
    candidates: tuple[tuple[InstrumentedAttribute[Any], str | None], ...] = (
        (Order.stripe_payment_intent_id, payment_intent),
        (Order.stripe_checkout_session_id, session),
        (Order.stripe_charge_id, charge),
        (Order.public_id, public_id),
    )
    for column, value in candidates:
        if value:
            order = lock_where(column, value)
            if order is not None:
                return order
    return None


def move(order: Order, status: str, *, source: str, reason: str | None = None) -> bool:
    """Move ``order`` to ``status`` if its state machine allows it; record why. Returns moved.

    Only the move: to pay an order use :func:`.fulfilment.advance`, which also delivers."""
    if status == order.status:
        return False
    if not order.can_move_to(status):
        log.info("order %s: %s -> %s refused (%s)", order.public_id, order.status, status, source)
        return False
    db.session.add(
        OrderTransition(order=order, from_status=order.status, to_status=status, source=source[:120], reason=reason)
    )
    order.status = status
    metrics.record_order_move(db.session(), status, order.method)  # counted if it commits
    return True


def stale(order: Order, event_created: int | None) -> bool:
    """An event older than the newest one applied to ``order`` changes nothing (True); a newer
    one becomes the newest. No event time (a sync) is never stale."""
    if event_created is None:
        return False
    if order.last_event_created is not None and event_created < order.last_event_created:
        return True
    order.last_event_created = event_created
    return False
