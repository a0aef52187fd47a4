"""Fulfilment: apply what Stripe says about a payment, a refund or a dispute to its order, and
deliver what a paid order grants -- exactly once.

The webhook handler and the status page's sync both call these functions, in any order, any
number of times, at the same moment. What keeps that safe:

* the order's row lock is taken first thing in the transaction (:mod:`.orders`), so two callers
  for one order run one after the other;
* an order only moves along ``models.order.TRANSITIONS``: a late ``payment_failed`` cannot
  undo ``paid``;
* an event older than the newest one already applied to the order changes nothing;
* points are written with a unique ledger key per fact (``order:<id>:purchase``), so the
  second caller finds them already credited.

These functions run inside the caller's transaction, never commit and never call Stripe; the
caller (webhook processing, the status sync, the purchase service) fetches what they need from
Stripe first and owns the transaction. A Stripe write that must follow a change made here (a
Lifetime purchase ends the buyer's subscription) is only *recorded* in that transaction and sent
after commit (:mod:`.subscription_sync`). Subscription invoices: :mod:`.invoices`.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from .. import money
from ..extensions import db
from ..models import Order, PointsEntry, User
from ..models.base import utcnow
from ..models.order import OrderStatus
from ..models.user import normalize_email
from . import notifications, points
from .orders import lock_matching, move, stale
from .stripe_objects import StripeObject, status_of_checkout_session, status_of_payment_intent, stripe_id
from .subscription_sync import end_subscriptions_for_lifetime, subscription_paid

log = logging.getLogger(__name__)


# --- moving an order and delivering what it grants -------------------------------------------------


def advance(order: Order, status: str, *, source: str, reason: str | None = None) -> bool:
    """Move ``order`` to ``status`` (:func:`.orders.move`); when that pays it, deliver. Returns moved."""
    moved = move(order, status, source=source, reason=reason)
    if moved and status == OrderStatus.PAID:
        _deliver(order, source)
    if moved:
        notifications.order_moved(order)  # a receipt, or "action needed" (once: the outbox is unique)
    return moved


def invoice_points_key(invoice_id: str) -> str:
    """The ledger key of a subscription invoice's points: one month of the plan, once."""
    return f"invoice:{invoice_id}"


def _deliver(order: Order, source: str) -> None:
    """What a paid order grants: its points (once) and, for Lifetime, the entitlement. A guest
    order goes to the account with its buyer's VERIFIED address, or waits for one (:func:`claim`)."""
    order.paid_at = order.paid_at or utcnow()
    order.failure_code = order.failure_message = None
    if order.user_id is None:
        order.user_id = verified_owner(order.buyer_email)
    if order.user_id is None:
        return
    if order.stripe_invoice_id:  # a subscription invoice: one month of the plan's points
        points.record(
            order.user_id,
            order.points,
            key=invoice_points_key(order.stripe_invoice_id),
            reason="subscription",
            order_id=order.id,
            note=f"{order.product_name}, invoice {order.stripe_invoice_id} ({source})",
        )
    else:
        points.record(
            order.user_id,
            order.points,
            key=f"order:{order.public_id}:purchase",
            reason="purchase",
            order_id=order.id,
            note=f"{order.product_name} ({source})",
        )
    if order.stripe_subscription_id:
        subscription_paid(order)
    if order.entitlement:  # a one-time plan: its features forever (the Lifetime plan)
        granted = db.session.execute(
            update(User)
            .where(User.id == order.user_id, User.lifetime_since.is_(None))
            .values(lifetime_since=utcnow())
            .returning(User.id)
        ).first()
        if granted is None and order.buyer_email:  # only a guest checkout can buy it twice (the store refuses)
            log.warning("order %s: user %s owns the Lifetime plan already: refund it?", order.public_id, order.user_id)
        end_subscriptions_for_lifetime(order.user_id, reason=order.public_id)


def _amount_matches(order: Order, amount: int | None, currency: str | None) -> bool:
    if amount is None:
        return True
    if amount != order.amount or (currency or "").lower() != order.currency:
        log.error(
            "order %s: Stripe says %s %s, our catalog said %s %s -- not fulfilled",
            order.public_id,
            amount,
            currency,
            order.amount,
            order.currency,
        )
        return False
    return True


# --- payments -------------------------------------------------------------------------------------


def apply_payment_intent(pi: StripeObject, *, source: str, event_created: int | None = None) -> Order | None:
    order = lock_matching(payment_intent=pi.get("id"), public_id=(pi.get("metadata") or {}).get("order_id"))
    if order is None:
        log.info("no order for PaymentIntent %s (%s)", pi.get("id"), source)
        return None
    if stale(order, event_created):
        return order
    if order.stripe_payment_intent_id is None:  # created by Checkout
        order.stripe_payment_intent_id = pi["id"]
    if pi.get("latest_charge"):
        order.stripe_charge_id = stripe_id(pi["latest_charge"])
    status, code, message = status_of_payment_intent(pi)
    if status == OrderStatus.PAID and not _amount_matches(
        order, pi.get("amount_received") or pi.get("amount"), pi.get("currency")
    ):
        return order
    if status == OrderStatus.FAILED:
        order.failure_code, order.failure_message = code, message
    advance(order, status, source=source, reason=message)
    return order


def apply_checkout_session(
    session: StripeObject, *, source: str, event_created: int | None = None, event_type: str | None = None
) -> Order | None:
    order = lock_matching(session=session.get("id"), public_id=session.get("client_reference_id"))
    if order is None:
        log.info("no order for Checkout Session %s (%s)", session.get("id"), source)
        return None
    if order.user_id is None:  # who paid a guest order never goes stale (a later event came first)
        _note_guest_buyer(order, session, source)
    if stale(order, event_created):
        return order
    if session.get("payment_intent") and order.stripe_payment_intent_id is None:
        order.stripe_payment_intent_id = stripe_id(session["payment_intent"])
    if session.get("mode") == "subscription":  # its first invoice: credited by invoice id
        if session.get("invoice") and order.stripe_invoice_id is None:
            order.stripe_invoice_id = stripe_id(session["invoice"])
        if session.get("subscription") and order.stripe_subscription_id is None:
            order.stripe_subscription_id = stripe_id(session["subscription"])
    status = status_of_checkout_session(session, event_type)
    if status == OrderStatus.PAID and not _amount_matches(order, session.get("amount_total"), session.get("currency")):
        return order
    reason = None
    if status == OrderStatus.FAILED:
        order.failure_code = "async_payment_failed"
        order.failure_message = reason = "Your bank declined the debit."
    advance(order, status, source=source, reason=reason)
    return order


def apply_charge(charge: StripeObject, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.succeeded`` / ``charge.failed``: note the charge; the PaymentIntent decides."""
    order = lock_matching(payment_intent=stripe_id(charge.get("payment_intent")), charge=charge.get("id"))
    if order is None:
        return None
    if order.stripe_charge_id is None:
        order.stripe_charge_id = charge["id"]
    return order


# --- refunds and disputes -------------------------------------------------------------------------


def apply_refund(charge: StripeObject, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.refunded``: partially or fully refunded, points taken back in proportion.

    The claw-back is keyed by the refunded total, so the same refund seen twice takes points
    back once, and a later, larger refund takes only the difference.
    """
    order = lock_matching(payment_intent=stripe_id(charge.get("payment_intent")), charge=charge.get("id"))
    if order is None:
        log.info("no order for refunded charge %s", charge.get("id"))
        return None
    refunded = min(int(charge.get("amount_refunded") or 0), order.amount)
    if refunded <= order.amount_refunded:
        return order  # an older or repeated refund event
    refunded_now, order.amount_refunded = refunded - order.amount_refunded, refunded
    status = OrderStatus.REFUNDED if refunded >= order.amount else OrderStatus.PARTIALLY_REFUNDED
    advance(order, status, source=source, reason=f"{refunded} of {order.amount} {order.currency} refunded")
    taken = _claw_back(order, refunded)
    notifications.refund_issued(order, refunded_now=refunded_now, points_taken=taken)
    return order


def _claw_back(order: Order, refunded: int) -> int:
    """Take back the points due for ``refunded``; returns how many were taken now."""
    if order.user_id is None:  # an unclaimed guest order granted nothing
        return 0
    target = -(order.points * refunded // order.amount)  # total taken back for this refund level
    already = -sum(e.amount for e in _entries(order) if e.reason in ("refund", "dispute"))
    due = target + already
    if due < 0:
        points.record(
            order.user_id,
            due,
            key=f"order:{order.public_id}:refund:{refunded}",
            reason="refund",
            order_id=order.id,
            note=f"{order.product_name}: {money.format_or_raw(refunded, order.currency)} of "
            f"{money.format_or_raw(order.amount, order.currency)} refunded, points "
            "taken back in proportion",
        )
        return -due
    return 0


def _entries(order: Order) -> list[PointsEntry]:
    return list(db.session.scalars(select(PointsEntry).where(PointsEntry.order_id == order.id)))


def apply_dispute(dispute: StripeObject, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.dispute.created``: the order is disputed and its remaining points frozen."""
    order = lock_matching(
        payment_intent=stripe_id(dispute.get("payment_intent")), charge=stripe_id(dispute.get("charge"))
    )
    if order is None:
        log.info("no order for dispute %s", dispute.get("id"))
        return None
    if advance(
        order, OrderStatus.DISPUTED, source=source, reason=f"Dispute {dispute.get('id')}: {dispute.get('reason')}"
    ):
        remaining = points.total_for_order(order.id)
        if remaining > 0 and order.user_id is not None:  # an unclaimed order granted nothing
            points.record(
                order.user_id,
                -remaining,
                key=f"order:{order.public_id}:dispute",
                reason="dispute",
                order_id=order.id,
                note=f"Points frozen while the payment is disputed ({dispute.get('id')})",
            )
        notifications.dispute_opened(order, dispute, points_frozen=max(remaining, 0))
    return order


# --- guest orders (issue 14): an order that belongs to an email, not (yet) to an account ------------

#: a guest order claimed in one of these states grants what it was paid for (less any refund);
#: claimed fully refunded or disputed it is only attached to the account (its history)
_CLAIM_DELIVERS = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})


def verified_owner(email: str | None) -> int | None:
    """The id of the account whose VERIFIED address is ``email`` (an unverified one never gets a
    guest order). Its row is locked (PostgreSQL): a verification committing meanwhile is seen
    here, or this payment commits first and the verification's claim sees the order
    (:func:`.guest_orders.claim_for` runs after the verification's commit)."""
    if not email:
        return None
    row = db.session.execute(
        select(User.id, User.email_verified_at).where(User.email == email).with_for_update()
    ).first()
    return row.id if row is not None and row.email_verified_at is not None else None


def _note_guest_buyer(order: Order, session: StripeObject, source: str) -> None:
    """Checkout tells who paid a guest order (``customer_details.email``): noted once. An order
    its PaymentIntent's event paid before this is delivered (and receipted) now."""
    email = normalize_email(str((session.get("customer_details") or {}).get("email") or ""))
    if order.buyer_email or "@" not in email:
        return
    order.buyer_email = email
    if order.status in _CLAIM_DELIVERS:
        owner = verified_owner(email)
        if owner is not None:
            claim(order, owner, source=source)
        notifications.order_moved(order)  # the receipt it could not have before (once: the outbox)


def claim(order: Order, user_id: int, *, source: str) -> bool:
    """Give the unowned, locked guest ``order`` to account ``user_id`` (its buyer's verified
    address): a paid one delivers now what it grants, less what was refunded meanwhile; the
    ledger keys make a second delivery nothing. Returns False if it had an owner already."""
    if order.user_id is not None:
        return False
    order.user_id = user_id
    if order.status in _CLAIM_DELIVERS:
        _deliver(order, source)
        if order.amount_refunded:
            _claw_back(order, order.amount_refunded)
    log.info("order %s claimed by user %s (%s)", order.public_id, user_id, source)
    return True
