"""Subscription invoices as orders.

A paid subscription invoice is an Order (method ``subscription_invoice``) for what the invoice
charged, with the plan's monthly points from our catalog, credited under the ledger key
``invoice:<in_id>`` (:func:`.fulfilment.invoice_points_key`) -- whichever of the webhook, the
status poll or the account page's sync sees it first. The order row is created with INSERT ...
ON CONFLICT DO NOTHING on its unique ``stripe_invoice_id``, then locked and moved to ``paid``
like any other order (:func:`.fulfilment.advance`).

Like :mod:`.fulfilment`, these functions run inside the caller's transaction and never call
Stripe: the caller fetched the invoice first.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import Order, OrderTransition, Price
from ..models.base import insert_or_ignore, utcnow
from ..models.order import OrderStatus, new_order_id
from . import notifications, points
from .fulfilment import advance, invoice_points_key
from .orders import lock_order
from .stripe_objects import (
    StripeObject,
    invoice_amount,
    invoice_metadata,
    invoice_payment_intent,
    is_plan_change_invoice,
    plan_price_ids,
    subscription_of_invoice,
)
from .subscription_sync import user_id_for_customer

log = logging.getLogger(__name__)


def plan_price_of_invoice(invoice: StripeObject) -> Price | None:
    """Our catalog price for the plan an invoice bills (its non-proration line's Stripe price)."""
    for stripe_price in plan_price_ids(invoice):
        price = db.session.scalar(select(Price).where(Price.stripe_price_id == stripe_price))
        if price is not None:
            return price
    return None


def invoice_order_values(
    user_id: int, price: Price, invoice: StripeObject, *, status: str = OrderStatus.PENDING
) -> dict[str, Any]:
    """The columns of a new order for ``invoice`` (what it charges, the plan's points)."""
    product = price.product
    return dict(
        public_id=new_order_id(),
        user_id=user_id,
        price_id=price.id,
        lookup_key=price.lookup_key,
        product_name=product.name,
        points=0 if is_plan_change_invoice(invoice) else product.points,
        entitlement=None,
        amount=invoice_amount(invoice),
        currency=(invoice.get("currency") or price.currency).lower(),
        method="subscription_invoice",
        status=str(status),
        amount_refunded=0,
        stripe_invoice_id=invoice["id"],
        stripe_subscription_id=subscription_of_invoice(invoice),
        stripe_payment_intent_id=invoice_payment_intent(invoice),
        created_at=utcnow(),
        updated_at=utcnow(),
        lock_version=0,
    )


def _order_id_of(invoice: StripeObject) -> int | None:
    return db.session.scalar(select(Order.id).where(Order.stripe_invoice_id == invoice["id"]))


def ensure_invoice_order(invoice: StripeObject, *, source: str) -> int | None:
    """The order id for a subscription invoice, creating the row (``pending``) if needed.

    A first invoice already has one: created with the subscription on our page (found by
    ``stripe_invoice_id``) or with the Checkout Session (found by the subscription's
    ``metadata.order_id``).
    """
    found = _order_id_of(invoice)
    if found is not None:
        return found
    public_id = invoice_metadata(invoice).get("order_id")
    if public_id:
        found = db.session.scalar(
            select(Order.id).where(Order.public_id == public_id, Order.stripe_invoice_id.is_(None))
        )
        if found is not None:
            return found
    user_id = user_id_for_customer(invoice.get("customer"))
    price = plan_price_of_invoice(invoice)
    if user_id is None or price is None:
        log.info("invoice %s: no buyer or plan of ours (%s)", invoice.get("id"), source)
        return None
    values = invoice_order_values(user_id, price, invoice)
    if values["amount"] <= 0:
        return None
    if insert_or_ignore(db.session, Order.__table__, values, "stripe_invoice_id"):
        order_id = _order_id_of(invoice)
        db.session.add(
            OrderTransition(
                order_id=order_id,
                from_status=None,
                to_status=OrderStatus.PENDING.value,
                source=source[:120],
                reason="subscription invoice",
            )
        )
        return order_id
    return _order_id_of(invoice)


def apply_invoice(invoice: StripeObject, *, source: str, event_created: int | None = None) -> Order | None:
    """A subscription invoice as Stripe has it now. Paid: its order is paid and the plan's
    monthly points credited once (``invoice:<in_id>``). Anything else: noted on its order, if
    it has one (the PaymentIntent's own status drives a pending order)."""
    if not subscription_of_invoice(invoice):
        return None
    if invoice.get("status") != "paid":
        found = _order_id_of(invoice)
        order = lock_order(found) if found is not None else None
        notifications.invoice_unpaid(invoice)  # a failed renewal: "action needed", once per invoice
        return order
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
        if pi and db.session.scalar(select(Order.id).where(Order.stripe_payment_intent_id == pi)) is None:
            order.stripe_payment_intent_id = pi
    if order.status != OrderStatus.PAID and order.can_move_to(OrderStatus.PAID):
        order.amount = int(invoice["amount_paid"])  # what the invoice charged
        order.currency = (invoice.get("currency") or order.currency).lower()
    advance(order, OrderStatus.PAID, source=source, reason=f"Invoice {invoice['id']} paid")
    return order


def _credit_free_invoice(invoice: StripeObject, source: str) -> None:
    """An invoice paid entirely from credit: no order (nothing was charged), but the month of
    the plan is paid, so its points are credited under the invoice's key."""
    if is_plan_change_invoice(invoice):
        return
    user_id = user_id_for_customer(invoice.get("customer"))
    price = plan_price_of_invoice(invoice)
    if user_id is None or price is None:
        return
    points.record(
        user_id,
        price.product.points,
        key=invoice_points_key(invoice["id"]),
        reason="subscription",
        note=f"{price.product.name}, invoice {invoice['id']} ({source})",
    )
