"""Stale orders: unpaid orders left behind, settled with what Stripe says about them now.

An order stays ``pending`` (or ``requires_action``, ``failed``, ``processing``) when the buyer
walked away, when a webhook was lost, or when its PaymentIntent or Checkout Session is gone at
Stripe: canceled, expired, or deleted (a test-mode reset). :func:`settle_stale_orders` asks
Stripe about each order older than ``older_than`` -- with no transaction open -- and applies the
answer through the same :mod:`.fulfilment` functions a webhook would, so the order only moves
forward along ``TRANSITIONS``:

* PaymentIntent ``canceled`` -> ``canceled``; Checkout Session ``expired`` -> ``expired``;
* an object Stripe no longer knows (404) -> ``expired`` ("gone at Stripe");
* ``succeeded`` (a lost webhook) -> ``paid``, its points credited once (the ledger's unique key);
* still open (the buyer may yet pay) -> left alone.

A second run changes nothing more. Each order asked about gets ``synced_at`` stamped, and the
oldest-asked come first, so a pile of abandoned open orders is worked through in turn instead of
the same ``limit`` oldest ones being asked about every run. Subscription invoices are left to
Stripe's own retries and to reconciliation (their PaymentIntent may be replaced).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from ..extensions import db
from ..models import Order
from ..models.base import utcnow
from ..models.order import SYNCABLE, OrderStatus
from ..stripe_gateway import GatewayError, StripeNotFound, get_gateway
from . import fulfilment, orders
from .stripe_objects import StripeObject
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)
SOURCE = "expire"
#: an order younger than this may still be on its pay page: not asked about
DEFAULT_AGE = timedelta(hours=1)
#: at most this many orders asked about per run (the next run takes the next ones)
DEFAULT_LIMIT = 200


@dataclass
class StaleReport:
    checked: int = 0
    #: order status -> how many orders moved there
    moved: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        moved = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(self.moved.items()))
        return (
            f"{self.checked} stale order(s) checked; "
            + (f"{sum(self.moved.values())} settled ({moved})" if moved else "none settled")
            + (f"; {len(self.errors)} error(s)" if self.errors else "")
            + "."
        )


@dataclass(frozen=True)
class _Stale:
    id: int
    public_id: str
    payment_intent: str | None
    session: str | None
    method: str


def settle_stale_orders(*, older_than: timedelta = DEFAULT_AGE, limit: int = DEFAULT_LIMIT) -> StaleReport:
    """Ask Stripe about every unpaid order older than ``older_than`` and apply its answer."""
    report = StaleReport()
    for stale in _claim(utcnow() - older_than, limit):
        report.checked += 1
        try:
            before, after = _settle(stale)
        except GatewayError as err:
            log.warning("stale order %s: Stripe could not be asked (%s)", stale.public_id, err.code)
            report.errors.append(f"{stale.public_id}: {err.code}: {err.detail or err.user_message}")
            continue
        except Exception as err:  # one bad order must not stop the run (logged with its traceback)
            log.exception("stale order %s failed", stale.public_id)
            report.errors.append(f"{stale.public_id}: {type(err).__name__}: {err}")
            continue
        if after != before:
            report.moved[after] += 1
    return report


def _claim(cutoff: datetime, limit: int) -> list[_Stale]:
    """The stale orders to ask about now (least recently asked first), stamped as asked."""
    with unit_of_work():
        rows = db.session.execute(
            select(
                Order.id,
                Order.public_id,
                Order.stripe_payment_intent_id,
                Order.stripe_checkout_session_id,
                Order.method,
            )
            .where(
                Order.status.in_(SYNCABLE),
                Order.created_at < cutoff,
                Order.stripe_invoice_id.is_(None),
                Order.method != "subscription_invoice",
            )
            .order_by(Order.synced_at.is_not(None), Order.synced_at, Order.id)
            .limit(limit)
        ).all()
        found = [_Stale(*row) for row in rows]
        if found:
            db.session.execute(
                update(Order)
                .where(Order.id.in_([s.id for s in found]))
                .values(synced_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    return found


def _settle(stale: _Stale) -> tuple[str, str]:
    """Fetch the order's Stripe object (no transaction open), then apply it. (before, after)."""
    read_then_release()
    gateway = get_gateway()
    obj: StripeObject | None
    try:
        if stale.method == "checkout" and stale.session:
            obj = gateway.retrieve_checkout_session(stale.session)
        elif stale.payment_intent:
            obj = gateway.retrieve_payment_intent(stale.payment_intent)
        elif stale.session:
            obj = gateway.retrieve_checkout_session(stale.session)
        else:
            obj = None  # nothing was ever created at Stripe
    except StripeNotFound:
        obj = None
    with unit_of_work():
        order = orders.lock_order(stale.id)
        before = order.status
        if obj is None:
            orders.move(order, OrderStatus.EXPIRED, source=SOURCE, reason="Its payment is gone at Stripe.")
        elif obj.get("object") == "checkout.session":
            fulfilment.apply_checkout_session(obj, source=SOURCE)
        else:
            fulfilment.apply_payment_intent(obj, source=SOURCE)
        after = order.status
    if after != before:
        log.info("stale order %s: %s -> %s", stale.public_id, before, after)
    return before, after
