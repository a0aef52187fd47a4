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

These functions run inside the caller's transaction, never commit and never call Stripe; the
caller (webhook processing, the status sync, the purchase service) fetches what they need from
Stripe first and owns the transaction. A Stripe write that must follow a change made here (a
Lifetime purchase ends the buyer's subscription) is only *recorded* in that transaction and sent
after commit: see :func:`finish_pending_cancels`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import NoResultFound

from ..extensions import db
from ..models import Order, OrderTransition, Price, Subscription, User
from ..models.base import insert_or_ignore, utcnow
from ..models.subscription import LIVE_STATUSES
from ..stripe_gateway import GatewayError, StripeRequestInvalid, get_gateway, idempotency_key
from . import points
from .uow import after_commit

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
    order = _lock_where(Order.id, order_id)
    if order is None:  # callers pass the id of an order they have read; orders are never deleted
        raise NoResultFound(f"order {order_id} not found")
    return order


def _lock_where(column, value) -> Order | None:
    """Lock the order whose ``column`` is ``value`` and load it: one UPDATE … RETURNING (a row
    lock on PostgreSQL, the write lock on SQLite), then the fresh row."""
    order_id = db.session.execute(
        update(Order).where(column == value).values(lock_version=Order.lock_version + 1)
        .returning(Order.id).execution_options(synchronize_session=False)).scalar()
    if order_id is None:
        return None
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
    if order.stripe_invoice_id:  # a subscription invoice: one month of the plan's points
        points.record(order.user_id, order.points, key=invoice_points_key(order.stripe_invoice_id),
                      reason="subscription", order_id=order.id,
                      note=f"{order.product_name}, invoice {order.stripe_invoice_id} ({source})")
    else:
        points.record(order.user_id, order.points, key=f"order:{order.public_id}:purchase",
                      reason="purchase", order_id=order.id,
                      note=f"{order.product_name} ({source})")
    if order.stripe_subscription_id:
        _subscription_paid(order)
    if order.entitlement:  # a one-time plan: its features forever (the Lifetime plan)
        db.session.execute(update(User).where(User.id == order.user_id,
                                              User.lifetime_since.is_(None))
                           .values(lifetime_since=utcnow()))
        end_subscriptions_for_lifetime(order.user_id, reason=order.public_id)


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

def _lock_matching(*, payment_intent: str | None = None, session: str | None = None,
                   charge: str | None = None, public_id: str | None = None) -> Order | None:
    """The order a Stripe object is about -- by the first of its ids that matches -- locked."""
    for column, value in ((Order.stripe_payment_intent_id, payment_intent),
                          (Order.stripe_checkout_session_id, session),
                          (Order.stripe_charge_id, charge), (Order.public_id, public_id)):
        if value:
            order = _lock_where(column, value)
            if order is not None:
                return order
    return None


# --- applying Stripe objects ----------------------------------------------------------------------

def apply_payment_intent(pi: dict, *, source: str, event_created: int | None = None) -> Order | None:
    order = _lock_matching(payment_intent=pi.get("id"),
                           public_id=(pi.get("metadata") or {}).get("order_id"))
    if order is None:
        log.info("no order for PaymentIntent %s (%s)", pi.get("id"), source)
        return None
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
    order = _lock_matching(session=session.get("id"),
                           public_id=session.get("client_reference_id"))
    if order is None:
        log.info("no order for Checkout Session %s (%s)", session.get("id"), source)
        return None
    if _stale(order, event_created):
        return order
    if session.get("payment_intent") and order.stripe_payment_intent_id is None:
        order.stripe_payment_intent_id = _id(session["payment_intent"])
    if session.get("mode") == "subscription":  # its first invoice: credited by invoice id
        if session.get("invoice") and order.stripe_invoice_id is None:
            order.stripe_invoice_id = _id(session["invoice"])
        if session.get("subscription") and order.stripe_subscription_id is None:
            order.stripe_subscription_id = _id(session["subscription"])
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
    order = _lock_matching(payment_intent=_id(charge.get("payment_intent")),
                           charge=charge.get("id"))
    if order is None:
        return None
    if order.stripe_charge_id is None:
        order.stripe_charge_id = charge["id"]
    return order


def apply_refund(charge: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.refunded``: partially or fully refunded, points taken back in proportion.

    The claw-back is keyed by the refunded total, so the same refund seen twice takes points
    back once, and a later, larger refund takes only the difference.
    """
    order = _lock_matching(payment_intent=_id(charge.get("payment_intent")),
                           charge=charge.get("id"))
    if order is None:
        log.info("no order for refunded charge %s", charge.get("id"))
        return None
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
                      note=f"{order.product_name}: {_money(refunded, order.currency)} of "
                           f"{_money(order.amount, order.currency)} refunded, points taken back "
                           "in proportion")


def _money(amount: int, currency: str) -> str:
    from ..web.helpers import format_money
    return format_money(amount, currency)


def _entries(order: Order):
    from ..models import PointsEntry
    return db.session.scalars(select(PointsEntry).where(PointsEntry.order_id == order.id)).all()


def apply_dispute(dispute: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """``charge.dispute.created``: the order is disputed and its remaining points frozen."""
    order = _lock_matching(payment_intent=_id(dispute.get("payment_intent")),
                           charge=_id(dispute.get("charge")))
    if order is None:
        log.info("no order for dispute %s", dispute.get("id"))
        return None
    if move(order, "disputed", source=source, reason=f"Dispute {dispute.get('id')}: "
                                                       f"{dispute.get('reason')}"):
        remaining = points.total_for_order(order.id)
        if remaining > 0:
            points.record(order.user_id, -remaining, key=f"order:{order.public_id}:dispute",
                          reason="dispute", order_id=order.id,
                          note=f"Points frozen while the payment is disputed ({dispute.get('id')})")
    return order


# --- subscriptions and their invoices --------------------------------------------------------------
#
# A paid subscription invoice is an Order (method ``subscription_invoice``) for what the invoice
# charged, with the plan's monthly points from our catalog, credited under the ledger key
# ``invoice:<in_id>`` -- whichever of the webhook, the status poll or the account page's sync
# sees it first. The order row is created with INSERT ... ON CONFLICT DO NOTHING on its unique
# ``stripe_invoice_id``, then locked and moved to ``paid`` like any other order.

def invoice_points_key(invoice_id: str) -> str:
    return f"invoice:{invoice_id}"


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def subscription_of_invoice(invoice: dict) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id(details.get("subscription"))


def _invoice_metadata(invoice: dict) -> dict:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("metadata") or {}


def invoice_payment_intent(invoice: dict) -> str | None:
    """The PaymentIntent paying an invoice (``payments`` expanded, or the confirmation secret)."""
    for payment in ((invoice.get("payments") or {}).get("data") or []):
        pi = _id((payment.get("payment") or {}).get("payment_intent"))
        if pi:
            return pi
    secret = (invoice.get("confirmation_secret") or {}).get("client_secret") or ""
    return secret.split("_secret_")[0] or None


def _line_price_id(line: dict) -> str | None:
    pricing = line.get("pricing") or {}
    return _id((pricing.get("price_details") or {}).get("price")) or _id(line.get("price"))


def _is_proration(line: dict) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def plan_price_of_invoice(invoice: dict) -> Price | None:
    """Our catalog price for the plan an invoice bills (its non-proration line's Stripe price)."""
    lines = ((invoice.get("lines") or {}).get("data") or [])
    # a proration-only invoice (an upgrade charged now) bills the new plan: its charge line first
    ordered = [ln for ln in lines if not _is_proration(ln)] + sorted(
        (ln for ln in lines if _is_proration(ln)), key=lambda ln: -int(ln.get("amount") or 0))
    for line in ordered:
        stripe_price = _line_price_id(line)
        if stripe_price:
            price = db.session.scalar(select(Price).where(Price.stripe_price_id == stripe_price))
            if price is not None:
                return price
    return None


def _user_id_for_customer(customer: Any) -> int | None:
    customer_id = _id(customer)
    if not customer_id:
        return None
    return db.session.scalar(select(User.id).where(User.stripe_customer_id == customer_id))


def invoice_order_values(user_id: int, price: Price, invoice: dict, *, status: str = "pending"
                         ) -> dict:
    from ..models.order import new_order_id
    product = price.product
    amount = int(invoice.get("amount_paid") or 0) if invoice.get("status") == "paid" \
        else int(invoice.get("amount_due") or 0)
    return dict(public_id=new_order_id(), user_id=user_id, price_id=price.id,
                lookup_key=price.lookup_key, product_name=product.name,
                points=0 if is_plan_change_invoice(invoice) else product.points,
                entitlement=None, amount=amount,
                currency=(invoice.get("currency") or price.currency).lower(),
                method="subscription_invoice", status=status, amount_refunded=0,
                stripe_invoice_id=invoice["id"],
                stripe_subscription_id=subscription_of_invoice(invoice),
                stripe_payment_intent_id=invoice_payment_intent(invoice),
                created_at=utcnow(), updated_at=utcnow(), lock_version=0)


def ensure_invoice_order(invoice: dict, *, source: str) -> int | None:
    """The order id for a subscription invoice, creating the row (``pending``) if needed.

    A first invoice already has one: created with the subscription on our page (found by
    ``stripe_invoice_id``) or with the Checkout Session (found by the subscription's
    ``metadata.order_id``).
    """
    found = db.session.scalar(select(Order.id).where(Order.stripe_invoice_id == invoice["id"]))
    if found is not None:
        return found
    public_id = _invoice_metadata(invoice).get("order_id")
    if public_id:
        found = db.session.scalar(select(Order.id).where(Order.public_id == public_id,
                                                         Order.stripe_invoice_id.is_(None)))
        if found is not None:
            return found
    user_id = _user_id_for_customer(invoice.get("customer"))
    price = plan_price_of_invoice(invoice)
    if user_id is None or price is None:
        log.info("invoice %s: no buyer or plan of ours (%s)", invoice.get("id"), source)
        return None
    values = invoice_order_values(user_id, price, invoice)
    if values["amount"] <= 0:
        return None
    if insert_or_ignore(db.session, Order.__table__, values, "stripe_invoice_id"):
        order_id = db.session.scalar(select(Order.id).where(Order.stripe_invoice_id == invoice["id"]))
        db.session.add(OrderTransition(order_id=order_id, from_status=None, to_status="pending",
                                       source=source[:120], reason="subscription invoice"))
        return order_id
    return db.session.scalar(select(Order.id).where(Order.stripe_invoice_id == invoice["id"]))


def apply_invoice(invoice: dict, *, source: str, event_created: int | None = None) -> Order | None:
    """A subscription invoice as Stripe has it now. Paid: its order is paid and the plan's
    monthly points credited once (``invoice:<in_id>``). Anything else: noted on its order, if
    it has one (the PaymentIntent's own status drives a pending order)."""
    if not subscription_of_invoice(invoice):
        return None
    if invoice.get("status") != "paid":
        found = db.session.scalar(select(Order.id).where(Order.stripe_invoice_id == invoice["id"]))
        return lock_order(found) if found is not None else None
    if int(invoice.get("amount_paid") or 0) <= 0:  # paid from credit: the month is still paid
        _credit_free_invoice(invoice, source)
        return None
    order_id = ensure_invoice_order(invoice, source=source)
    if order_id is None:
        return None
    order = lock_order(order_id)
    if order.stripe_invoice_id is None:
        order.stripe_invoice_id = invoice["id"]
    order.stripe_subscription_id = order.stripe_subscription_id or subscription_of_invoice(invoice)
    if order.stripe_payment_intent_id is None:
        pi = invoice_payment_intent(invoice)
        if pi and db.session.scalar(select(Order.id).where(
                Order.stripe_payment_intent_id == pi)) is None:
            order.stripe_payment_intent_id = pi
    if order.status != "paid" and order.can_move_to("paid"):
        order.amount = int(invoice["amount_paid"])  # what the invoice charged
        order.currency = (invoice.get("currency") or order.currency).lower()
    move(order, "paid", source=source, reason=f"Invoice {invoice['id']} paid")
    return order


def is_plan_change_invoice(invoice: dict) -> bool:
    """An upgrade's proration invoice (``always_invoice``): money for the plan change only.
    Points follow the monthly invoices (the next one credits the new plan's points), so it
    credits none -- else an upgrade-downgrade round trip would mint a month of points."""
    return invoice.get("billing_reason") == "subscription_update"


def _credit_free_invoice(invoice: dict, source: str) -> None:
    if is_plan_change_invoice(invoice):
        return None
    user_id = _user_id_for_customer(invoice.get("customer"))
    price = plan_price_of_invoice(invoice)
    if user_id is None or price is None:
        return None
    points.record(user_id, price.product.points, key=invoice_points_key(invoice["id"]),
                  reason="subscription",
                  note=f"{price.product.name}, invoice {invoice['id']} ({source})")
    return None


def _subscription_paid(order: Order) -> None:
    """The first (or an overdue) invoice is paid: the subscription is active as far as we know
    now, unless another of its invoices is still unpaid. The next fetch from Stripe confirms it;
    answers received before this moment are older news (``fetched_at``)."""
    unpaid = db.session.scalar(select(Order.id).where(
        Order.stripe_subscription_id == order.stripe_subscription_id, Order.id != order.id,
        Order.status.in_(("pending", "requires_action", "failed", "processing"))).limit(1))
    if unpaid is not None:
        return
    db.session.execute(update(Subscription).where(
        Subscription.stripe_subscription_id == order.stripe_subscription_id,
        Subscription.status.in_(("incomplete", "past_due", "unpaid")))
        .values(status="active", fetched_at=utcnow())
        .execution_options(synchronize_session=False))


def lock_subscription(row_id: int) -> Subscription:
    db.session.execute(update(Subscription).where(Subscription.id == row_id)
                       .values(lock_version=Subscription.lock_version + 1)
                       .execution_options(synchronize_session=False))
    return db.session.execute(select(Subscription).where(Subscription.id == row_id)
                              .execution_options(populate_existing=True)).scalar_one()


def _sub_stripe_price(sub: dict) -> str | None:
    items = ((sub.get("items") or {}).get("data") or [])
    return _id(items[0].get("price")) if items else None


def apply_subscription(sub: dict, *, source: str, fetched_at: datetime | None = None,
                       event_created: int | None = None) -> Subscription | None:
    """Mirror a subscription object freshly fetched from Stripe into our row.

    ``fetched_at`` is when Stripe's answer *arrived*: an answer that arrived before the one
    already applied is older news and changes nothing, so duplicate and out-of-order webhooks
    (each of which re-fetches) leave the newest state. The arrival, not the start, of a request
    orders answers: Stripe handles requests in turn, and a request that waited (in a queue, behind
    a slow one) may be answered after a later-started write -- ordering by start once let a
    webhook's fetch, started after the buyer's plan change but answered before it, overwrite it.
    A subscription we have not seen (started through Checkout) gets its row here, if the
    customer is one of our buyers.
    """
    row_id = db.session.scalar(select(Subscription.id)
                               .where(Subscription.stripe_subscription_id == sub["id"]))
    if row_id is None:
        user_id = _user_id_for_customer(sub.get("customer"))
        if user_id is None:
            log.info("subscription %s: not one of our buyers (%s)", sub.get("id"), source)
            return None
        from ..models.subscription import new_subscription_id
        insert_or_ignore(db.session, Subscription.__table__, dict(
            public_id=new_subscription_id(), user_id=user_id, stripe_subscription_id=sub["id"],
            status=sub.get("status") or "incomplete", cancel_at_period_end=False,
            lock_version=0, created_at=utcnow(), updated_at=utcnow()), "stripe_subscription_id")
        row_id = db.session.execute(select(Subscription.id).where(
            Subscription.stripe_subscription_id == sub["id"])).scalar_one()
    row = lock_subscription(row_id)
    if fetched_at is not None:
        if row.fetched_at is not None and fetched_at < row.fetched_at:
            log.info("subscription %s: older answer ignored (%s)", sub["id"], source)
            return row
        row.fetched_at = fetched_at
    stripe_price = _sub_stripe_price(sub)
    if stripe_price and stripe_price != row.stripe_price_id:
        row.stripe_price_id = stripe_price
        row.price_id = db.session.scalar(select(Price.id)
                                         .where(Price.stripe_price_id == stripe_price))
    items = ((sub.get("items") or {}).get("data") or [])
    if items:
        row.current_period_start = _ts(items[0].get("current_period_start"))
        row.current_period_end = _ts(items[0].get("current_period_end"))
    row.status = sub.get("status") or row.status
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    row.canceled_at = _ts(sub.get("canceled_at"))
    row.ended_at = _ts(sub.get("ended_at"))
    row.latest_invoice_id = _id(sub.get("latest_invoice")) or row.latest_invoice_id
    _note_owed_cancel(row)
    return row


# --- a Stripe write owed after a local change: recorded, sent after commit, retried ------------------
#
# A paid Lifetime order ends the buyer's subscription at Stripe. That write never runs inside the
# order's transaction: a slow Stripe would hold the order lock (and on SQLite the database's write
# lock) for as long as it takes, and a rollback after Stripe said yes would forget a change Stripe
# made. Instead the transaction that pays the order records the intent on the subscription row
# (``pending_cancel``); once it has committed, :func:`run_after_commit` (registered with
# ``uow.after_commit``, run by ``uow.unit_of_work`` and by webhook processing) sends it with an
# idempotency key. A failure stays recorded and is retried by the next commit that owes it, the account page's sync
# (``subscriptions.enforce_lifetime``) and ``flask reconcile`` (:func:`finish_pending_cancels`).

#: ``db.session.info`` key: the buyers whose owed cancels the current transaction recorded
AFTER_COMMIT = "storefront.owed_cancels"


def end_subscriptions_for_lifetime(user_id: int, *, reason: str) -> int:
    """A Lifetime purchase is paid: record, in the caller's transaction, that the buyer's renewing
    subscriptions must end (at the end of the period they have paid for; an unpaid one now).
    Stripe is asked after commit (:func:`run_after_commit`). Returns how many were newly marked."""
    marked = db.session.execute(update(Subscription).where(
        Subscription.user_id == user_id, Subscription.status.in_(LIVE_STATUSES),
        Subscription.cancel_at_period_end.is_(False), Subscription.pending_cancel.is_(None))
        .values(pending_cancel=f"lifetime:{reason}"[:120], pending_cancel_since=utcnow(),
                pending_cancel_attempts=0, pending_cancel_error=None)
        .returning(Subscription.id).execution_options(synchronize_session=False)).all()
    _owe_after_commit(user_id)  # marked now or earlier and not sent yet: send it after commit
    return len(marked)


def _owe_after_commit(user_id: int) -> None:
    db.session.info.setdefault(AFTER_COMMIT, set()).add(user_id)
    after_commit(run_after_commit)


def _note_owed_cancel(row: Subscription) -> None:
    """Keep ``pending_cancel`` true to Stripe's state just applied: settled once the
    subscription ends or is set to end; owed if a Lifetime owner's subscription still renews
    (e.g. one started through Checkout that we first hear of after the Lifetime purchase).
    Whatever is still owed is tried again after this transaction commits."""
    if row.pending_cancel is not None:
        if not row.live or row.cancel_at_period_end:
            row.pending_cancel = row.pending_cancel_since = row.pending_cancel_error = None
        else:
            _owe_after_commit(row.user_id)
        return
    if not row.live or row.cancel_at_period_end:
        return
    if db.session.scalar(select(User.lifetime_since).where(User.id == row.user_id)) is None:
        return
    row.pending_cancel = f"lifetime:user-{row.user_id}"
    row.pending_cancel_since = utcnow()
    row.pending_cancel_attempts = 0
    row.pending_cancel_error = None
    _owe_after_commit(row.user_id)


def run_after_commit() -> None:
    """Send the Stripe writes the transaction just committed owes (call right after commit)."""
    user_ids = db.session.info.pop(AFTER_COMMIT, None)
    if user_ids:
        finish_pending_cancels(user_ids=user_ids)


def finish_pending_cancels(*, user_ids: Iterable[int] | None = None,
                           limit: int = 100) -> tuple[int, int]:
    """Send every owed subscription cancel (of ``user_ids``, or all) to Stripe, each in its own
    short steps with no transaction open across the call. Returns (settled, still pending).
    Never raises: what fails stays recorded for the next try."""
    query = select(Subscription.id).where(Subscription.pending_cancel.is_not(None))
    if user_ids is not None:
        query = query.where(Subscription.user_id.in_(list(user_ids)))
    db.session.commit()
    row_ids = db.session.scalars(query.order_by(Subscription.pending_cancel_since)
                                 .limit(limit)).all()
    db.session.commit()
    settled = 0
    for row_id in row_ids:
        try:
            settled += finish_pending_cancel(row_id)
        except Exception:  # one row must not stop the others; it stays owed
            db.session.rollback()
            log.exception("owed cancel of subscription row %s failed", row_id)
    return settled, len(row_ids) - settled


def finish_pending_cancel(row_id: int) -> bool:
    """Send one owed cancel; True once it holds at Stripe and our row says so.

    The try is claimed (its number counted) and committed first; the idempotency key names
    the try, so a retry is a new request, and a retry first reads the subscription in case an
    earlier try reached Stripe but its answer was lost (then nothing is sent again)."""
    claimed = db.session.execute(
        update(Subscription).where(Subscription.id == row_id,
                                   Subscription.pending_cancel.is_not(None))
        .values(pending_cancel_attempts=Subscription.pending_cancel_attempts + 1)
        .returning(Subscription.stripe_subscription_id, Subscription.status,
                   Subscription.pending_cancel, Subscription.pending_cancel_attempts)
        .execution_options(synchronize_session=False)).first()
    db.session.commit()
    if claimed is None:
        return True  # settled meanwhile
    stripe_id, status, reason, attempt = claimed
    gateway = get_gateway()
    try:
        sub = gateway.retrieve_subscription(stripe_id) if attempt > 1 else None
        if sub is None or (sub.get("status") in LIVE_STATUSES
                           and not sub.get("cancel_at_period_end")):
            key = idempotency_key("subscription", stripe_id, "owed-cancel", reason, attempt)
            if status == "incomplete":  # never paid: nothing to run to the period's end
                sub = gateway.cancel_subscription(stripe_id, idempotency_key=key)
            else:
                sub = gateway.update_subscription(stripe_id, {"cancel_at_period_end": True},
                                                  idempotency_key=key)
    except StripeRequestInvalid as err:  # e.g. already canceled: Stripe's state decides
        try:
            sub = gateway.retrieve_subscription(stripe_id)
        except GatewayError:
            return _cancel_failed(row_id, stripe_id, err)
    except GatewayError as err:
        return _cancel_failed(row_id, stripe_id, err)
    try:
        row = apply_subscription(sub, source=reason or "owed-cancel", fetched_at=utcnow())
        settled = row is None or row.pending_cancel is None
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    log.info("subscription %s: owed cancel (%s) %s", stripe_id, reason,
             "holds" if settled else "still owed")
    return settled


def _cancel_failed(row_id: int, stripe_id: str, err: GatewayError) -> bool:
    log.warning("subscription %s: owed cancel not sent (%s); retried later", stripe_id, err.code)
    db.session.execute(update(Subscription).where(Subscription.id == row_id).values(
        pending_cancel_error=f"{err.code}: {err.detail}"[:255])
        .execution_options(synchronize_session=False))
    db.session.commit()
    return False
