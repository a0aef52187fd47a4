"""Fulfilment: apply what Stripe says about a payment to its order -- exactly once.

The webhook handler and the status page's sync both call these functions, in any order, any
number of times, at the same moment. What keeps that safe:

* :func:`lock_order` takes the order's row lock first thing in the transaction (an UPDATE,
  which on PostgreSQL locks the row and on SQLite takes the write lock), so two callers for one
  order run one after the other;
* an order only moves along ``models.order.TRANSITIONS``: a late ``payment_failed`` cannot
  undo ``paid``;
* an event older than the newest one already applied to the order changes nothing;
* points are written with a unique ledger key per fact (``order:<id>:purchase``), so the
  second caller finds them already credited.

These functions run inside the caller's transaction and never commit; the caller (webhook
processing, the status sync, the purchase service) owns the transaction.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from ..extensions import db
from ..models import Order, OrderTransition, User
from ..models.base import utcnow
from . import points

log = logging.getLogger(__name__)


# --- reading Stripe objects ---------------------------------------------------------------------

def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def status_of_payment_intent(pi: dict) -> tuple[str, str | None, str | None]:
    """Our order status for a PaymentIntent, with the failure code and buyer message if any."""
    status = pi.get("status")
    if status == "succeeded":
        return "paid", None, None
    if status == "processing":
        return "processing", None, None
    if status == "requires_action":
        return "requires_action", None, None
    if status == "canceled":
        return "canceled", None, None
    error = pi.get("last_payment_error")
    if status == "requires_payment_method" and error:
        return "failed", error.get("decline_code") or error.get("code"), \
            error.get("message") or "Your payment was declined."
    return "pending", None, None


def status_of_checkout_session(session: dict, event_type: str | None = None) -> str:
    if event_type == "checkout.session.async_payment_failed":
        return "failed"
    if session.get("status") == "expired":
        return "expired"
    if session.get("status") == "complete":
        return "processing" if session.get("payment_status") == "unpaid" else "paid"
    return "pending"


# --- the order lock and moves -------------------------------------------------------------------

def lock_order(order_id: int) -> Order:
    """Take the order's lock (first statement of the transaction) and return it fresh."""
    db.session.execute(update(Order).where(Order.id == order_id)
                       .values(lock_version=Order.lock_version + 1)
                       .execution_options(synchronize_session=False))
    return db.session.execute(select(Order).where(Order.id == order_id)
                              .execution_options(populate_existing=True)).scalar_one()


def move(order: Order, status: str, *, source: str, reason: str | None = None) -> bool:
    """Move ``order`` to ``status`` if its state machine allows it; record why. Returns moved."""
    if status == order.status:
        return False
    if not order.can_move_to(status):
        log.info("order %s: %s -> %s refused (%s)", order.public_id, order.status, status, source)
        return False
    db.session.add(OrderTransition(order=order, from_status=order.status, to_status=status,
                                   source=source[:120], reason=reason))
    order.status = status
    if status == "paid":
        _deliver(order, source)
    return True


def _deliver(order: Order, source: str) -> None:
    """What a paid order grants: its points (once) and, for Lifetime, the entitlement."""
    order.paid_at = order.paid_at or utcnow()
    order.failure_code = order.failure_message = None
    points.record(order.user_id, order.points, key=f"order:{order.public_id}:purchase",
                  reason="purchase", order_id=order.id, note=f"{order.product_name} ({source})")
    if order.entitlement:  # a one-time plan: its features forever (the Lifetime plan)
        db.session.execute(update(User).where(User.id == order.user_id,
                                              User.lifetime_since.is_(None))
                           .values(lifetime_since=utcnow()))


def _stale(order: Order, event_created: int | None) -> bool:
    if event_created is None:
        return False
    if order.last_event_created is not None and event_created < order.last_event_created:
        return True
    order.last_event_created = event_created
    return False


def _amount_matches(order: Order, amount: int | None, currency: str | None) -> bool:
    if amount is None:
        return True
    if amount != order.amount or (currency or "").lower() != order.currency:
        log.error("order %s: Stripe says %s %s, our catalog said %s %s -- not fulfilled",
                  order.public_id, amount, currency, order.amount, order.currency)
        return False
    return True


# --- finding the order --------------------------------------------------------------------------

def _order_id_for(*, payment_intent: str | None = None, session: str | None = None,
                  charge: str | None = None, public_id: str | None = None) -> int | None:
    for column, value in ((Order.stripe_payment_intent_id, payment_intent),
                          (Order.stripe_checkout_session_id, session),
                          (Order.stripe_charge_id, charge), (Order.public_id, public_id)):
        if value:
            found = db.session.scalar(select(Order.id).where(column == value))
            if found is not None:
                return found
    return None


# --- applying Stripe objects ----------------------------------------------------------------------

def apply_payment_intent(pi: dict, *, source: str, event_created: int | None = None) -> Order | None:
    order_id = _order_id_for(payment_intent=pi.get("id"),
                             public_id=(pi.get("metadata") or {}).get("order_id"))
    if order_id is None:
        log.info("no order for PaymentIntent %s (%s)", pi.get("id"), source)
        return None
    order = lock_order(order_id)
    if _stale(order, event_created):
        return order
    if order.stripe_payment_intent_id is None:  # created by Checkout
        order.stripe_payment_intent_id = pi["id"]
    if pi.get("latest_charge"):
        order.stripe_charge_id = _id(pi["latest_charge"])
    status, code, message = status_of_payment_intent(pi)
    if status == "paid" and not _amount_matches(order, pi.get("amount_received") or pi.get("amount"),
                                                 pi.get("currency")):
        return order
    if status == "failed":
        order.failure_code, order.failure_message = code, message
    move(order, status, source=source, reason=message)
    return order


def apply_checkout_session(session: dict, *, source: str, event_created: int | None = None,
                           event_type: str | None = None) -> Order | None:
    order_id = _order_id_for(session=session.get("id"),
                             public_id=session.get("client_reference_id"))
    if order_id is None:
        log.info("no order for Checkout Session %s (%s)", session.get("id"), source)
        return None
    order = lock_order(order_id)
    if _stale(order, event_created):
        return order
    if session.get("payment_intent") and order.stripe_payment_intent_id is None:
        order.stripe_payment_intent_id = _id(session["payment_intent"])
    status = status_of_checkout_session(session, event_type)
    if status == "paid" and not _amount_matches(order, session.get("amount_total"),
                                                 session.get("currency")):
        return order
    reason = None
    if status == "failed":
        order.failure_code = "async_payment_failed"
        order.failure_message = reason = "Your bank declined the debit."
    move(order, status, source=source, reason=reason)
    return order


def apply_charge(charge: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.succeeded`` / ``charge.failed``: note the charge; the PaymentIntent decides."""
    order_id = _order_id_for(payment_intent=_id(charge.get("payment_intent")),
                             charge=charge.get("id"))
    if order_id is None:
        return None
    order = lock_order(order_id)
    if order.stripe_charge_id is None:
        order.stripe_charge_id = charge["id"]
    return order


def apply_refund(charge: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.refunded``: partially or fully refunded, points taken back in proportion.

    The claw-back is keyed by the refunded total, so the same refund seen twice takes points
    back once, and a later, larger refund takes only the difference.
    """
    order_id = _order_id_for(payment_intent=_id(charge.get("payment_intent")),
                             charge=charge.get("id"))
    if order_id is None:
        log.info("no order for refunded charge %s", charge.get("id"))
        return None
    order = lock_order(order_id)
    refunded = min(int(charge.get("amount_refunded") or 0), order.amount)
    if refunded <= order.amount_refunded:
        return order  # an older or repeated refund event
    order.amount_refunded = refunded
    status = "refunded" if refunded >= order.amount else "partially_refunded"
    move(order, status, source=source,
         reason=f"{refunded} of {order.amount} {order.currency} refunded")
    _claw_back(order, refunded)
    return order


def _claw_back(order: Order, refunded: int) -> None:
    target = -(order.points * refunded // order.amount)  # total taken back for this refund level
    already = -sum(e.amount for e in _entries(order) if e.reason in ("refund", "dispute"))
    due = target + already
    if due < 0:
        points.record(order.user_id, due, key=f"order:{order.public_id}:refund:{refunded}",
                      reason="refund", order_id=order.id,
                      note=f"Refund of {refunded} {order.currency} on {order.product_name}")


def _entries(order: Order):
    from ..models import PointsEntry
    return db.session.scalars(select(PointsEntry).where(PointsEntry.order_id == order.id)).all()


def apply_dispute(dispute: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.dispute.created``: the order is disputed and its remaining points frozen."""
    order_id = _order_id_for(payment_intent=_id(dispute.get("payment_intent")),
                             charge=_id(dispute.get("charge")))
    if order_id is None:
        log.info("no order for dispute %s", dispute.get("id"))
        return None
    order = lock_order(order_id)
    if move(order, "disputed", source=source, reason=f"Dispute {dispute.get('id')}: "
                                                       f"{dispute.get('reason')}"):
        remaining = points.total_for_order(order.id)
        if remaining > 0:
            points.record(order.user_id, -remaining, key=f"order:{order.public_id}:dispute",
                          reason="dispute", order_id=order.id,
                          note=f"Points frozen while the payment is disputed ({dispute.get('id')})")
    return order
